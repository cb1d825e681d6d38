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
// is closed, the detached processes of its jobs still running are killed
// too, and said so: a driver, a runner and the command's children, and
// the children of a runner that died while its minion was down (nobody
// is left to clean them up).
func TestDetachedCleanup(t *testing.T) {
	t.Parallel()
	takePlace(t)
	dir := t.TempDir()
	f := newFleet(dir, filepath.Join(dir, "overlord"), binDir, "HOME="+dir)
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
	var ms []*minionProc
	for _, n := range []string{"web1", "web2"} {
		m, err := f.add(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.start(m); err != nil {
			t.Fatal(err)
		}
		if err := f.ready(m); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	// The command's child writes its pid to a file in the minion's
	// working directory (its state directory), so the command line of
	// the child holds no path of the test.
	id := callAsync(t, f, "*", "command.run", "sleep 300 & echo $! > child; wait")
	var children []int
	runners := map[string]procInfo{}
	for _, m := range ms {
		pid, err := strconv.Atoi(waitLines(t, filepath.Join(m.dir, "child"), 1)[0])
		if err != nil {
			t.Fatal(err)
		}
		children = append(children, pid)
		r := findProcs(" run-job " + filepath.Join(m.dir, "spool") + "/")
		if len(r) != 1 {
			t.Fatalf("%s's runner: %v, want one", m.name, r)
		}
		runners[m.name] = r[0]
	}
	driver := drivers(f.stateDir, id)
	if len(driver) != 1 {
		t.Fatalf("driver %v, want one", driver)
	}
	// web2's daemon stops, then its runner dies alone: its child is left
	// in a process group without a leader.
	if err := f.stop(ms[1]); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(runners["web2"].pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := waitGone(readyTimeout, runners["web2"].pid); err != nil {
		t.Fatal(err)
	}

	closed = true
	if errs := f.close(); len(errs) != 0 {
		t.Fatalf("close: %v", errs)
	}
	for _, pid := range append([]int{driver[0].pid, runners["web1"].pid}, children...) {
		if alive(pid) {
			t.Errorf("pid %d still there after close", pid)
		}
	}
	all := strings.Join(notes, "\n")
	for _, pid := range []int{driver[0].pid, runners["web1"].pid, children[1]} {
		if want := fmt.Sprintf("killed pid %d: ", pid); !strings.Contains(all, want) {
			t.Errorf("close noted %q, want %q", all, want)
		}
	}
}
