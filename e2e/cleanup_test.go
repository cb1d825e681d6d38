//go:build linux

package e2e

import (
	"errors"
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
