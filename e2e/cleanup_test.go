//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestScriptCleanup checks what the scripts rely on: when a script ends,
// the processes it started in the background with 'exec ... &' are
// stopped by testscript, and the minions of 'fleet' by our cleanup, so
// that no process and no listening port outlives its script.
func TestScriptCleanup(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		pids  []int
		addrs []string
	)
	p := scriptParams(t, "testdata/cleanup")
	p.Cmds["recordpids"] = func(ts *testscript.TestScript, neg bool, args []string) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range ts.BackgroundCmds() {
			pids = append(pids, c.Process.Pid)
		}
		for _, m := range fleetOf(ts).minions {
			pids = append(pids, m.p.Pid())
		}
		addrs = append(addrs, args...)
	}
	t.Run("scripts", func(t *testing.T) { testscript.Run(t, p) })

	mu.Lock()
	defer mu.Unlock()
	if len(pids) != 3 || len(addrs) != 2 {
		t.Fatalf("recorded pids %v, addresses %v; want 3 and 2", pids, addrs)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still there after its script (kill -0: %v)", pid, err)
		}
	}
	for _, a := range addrs {
		if err := waitPort(a, false, time.Second, nil); err != nil {
			t.Error(err)
		}
	}
}

// TestDetachedCleanup checks what the async tests rely on: when a fleet
// is closed, the detached processes of its jobs still running (a driver,
// a runner, and the command's children) are killed too, and said so.
func TestDetachedCleanup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := newFleet(dir, filepath.Join(dir, "overlord"), append(binEnv(), "HOME="+dir))
	var notes []string
	f.logf = func(format string, args ...any) { notes = append(notes, fmt.Sprintf(format, args...)) }
	closed := false
	t.Cleanup(func() {
		if !closed {
			f.close()
		}
	})
	if err := f.initCA(); err != nil {
		t.Fatal(err)
	}
	m, err := f.add("web1")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.start(m); err != nil {
		t.Fatal(err)
	}
	if err := f.ready(m); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "child")
	id := callAsync(t, f, "web1", "command.run", fmt.Sprintf("sleep 300 & echo $! > %s; wait", shellQuote(pidFile)))
	child, err := strconv.Atoi(waitLines(t, pidFile, 1)[0])
	if err != nil {
		t.Fatal(err)
	}
	driver := drivers(f.stateDir, id)
	runner := findProcs(" run-job " + filepath.Join(m.dir, "spool") + "/")
	if len(driver) != 1 || len(runner) != 1 {
		t.Fatalf("driver %v, runner %v: want one of each", driver, runner)
	}

	closed = true
	if errs := f.close(); len(errs) != 0 {
		t.Fatalf("close: %v", errs)
	}
	for _, pid := range []int{driver[0].pid, runner[0].pid, child} {
		if alive(pid) {
			t.Errorf("pid %d still there after close", pid)
		}
	}
	all := strings.Join(notes, "\n")
	for _, want := range []string{fmt.Sprintf("killed pid %d: ", driver[0].pid), fmt.Sprintf("killed pid %d: ", runner[0].pid)} {
		if !strings.Contains(all, want) {
			t.Errorf("close noted %q, want %q", all, want)
		}
	}
}
