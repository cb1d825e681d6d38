package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestHeldCallMinionCrash: a synchronous call that outlived its wait runs
// in the minion's daemon. When the daemon is killed (SIGKILL, an OOM
// kill), its command goes on, orphaned; the daemon that comes back
// settles the job lost and kills the command's process group, as it does
// for a dead runner's, instead of leaving it running unsupervised.
func TestHeldCallMinionCrash(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1")
	web1 := mustMinion(t, f, "web1")
	pidFile := filepath.Join(f.dir, "pid")
	cmd, stdout, stderr := overlordCmd(f, "call", "web1", "command.run",
		fmt.Sprintf("echo $$ > %s; exec sleep 300", shellQuote(pidFile)), "--timeout", "1s", "-o", "json")
	if code := exitCode(t, cmd); code != 4 {
		t.Fatalf("call: exit %d, want 4 (detached)\n%s\n%s", code, stdout, stderr)
	}
	waitLines(t, pidFile, 1)
	data, _ := os.ReadFile(pidFile)
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-pid, syscall.SIGKILL) })

	if err := f.kill(web1); err != nil {
		t.Fatal(err)
	}
	if !alive(pid) {
		t.Fatalf("the command (pid %d) went with its daemon: nothing to check", pid)
	}
	off := logSize(web1.p)
	if err := f.start(web1); err != nil {
		t.Fatal(err)
	}
	if err := f.ready(web1); err != nil {
		t.Fatal(err)
	}
	waitLog(t, web1.p, off, `msg="settled jobs left running" ingested=0 adopted=0 lost=1`)
	if err := waitGone(readyTimeout, pid); err != nil {
		t.Fatalf("the held call's command after its daemon crashed and came back: %v", err)
	}
}
