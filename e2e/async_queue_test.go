//go:build linux

package e2e

import (
	"encoding/json"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// These two tests wait out a minion's minute of absence (~80 s each):
// their fleets (startIdleFleet) take no place among the tests running
// processes, so they start as soon as the parallel tests do and their
// wait overlaps the rest of the package instead of ending it.

// TestAsyncQueueMinionDownLong: with --queue, a minion that is down when
// the job is submitted, and stays down for longer than the minute a
// minion may be out of reach, keeps its entry open, queued; started
// then, it gets the job, and the job ends ok.
func TestAsyncQueueMinionDownLong(t *testing.T) {
	t.Parallel()
	f := startIdleFleet(t)
	web1, err := f.add("web1") // registered, not started
	if err != nil {
		t.Fatal(err)
	}
	id := callAsync(t, f, "web1", "command.run", "echo done", "--queue")
	j := waitJob(t, f, id, readyTimeout, "queued", func(j jobView) bool { return j.Minions["web1"].QueuedSince != "" })
	e := j.Minions["web1"]
	since, err := time.Parse(time.RFC3339, e.QueuedSince)
	if err != nil || e.State != "RUNNING" || e.LastError == nil || e.LastError.Kind != "unreachable" {
		t.Fatalf("queued entry %+v (last error %+v, %v): want RUNNING since an RFC 3339 time, last error unreachable", e, e.LastError, err)
	}

	// The point is the passage of time: past the 60 s a minion may be
	// out of reach, the entry still waits.
	time.Sleep(time.Until(since.Add(65 * time.Second)))
	j, code, stderr := jobStatus(t, f, id)
	if e := j.Minions["web1"]; j.State == "FINISHED" || e.State != "RUNNING" || e.QueuedSince == "" || code != 4 {
		t.Fatalf("after 65 s: exit %d, job %s; want the entry still queued, exit 4\n%s", code, j, stderr)
	}

	if err := f.start(web1); err != nil {
		t.Fatal(err)
	}
	if err := f.ready(web1); err != nil {
		t.Fatal(err)
	}
	j = waitFinished(t, f, id, 0)
	if e := j.Minions["web1"]; !e.OK || e.stdout() != "done\n" || e.QueuedSince != "" || e.LastError != nil || e.MinionJobID == "" {
		t.Errorf("entry %+v (result %s), want ok with stdout \"done\\n\", delivered, no longer queued", e, e.Result)
	}
}

// TestAsyncReconcileAfterPartition: a minion cut off (its daemon alone
// stopped with SIGSTOP; the job's runner goes on) while its job runs is
// recorded unreachable after a minute, and the job FINISHED; the job ends
// on the minion meanwhile. After 75 s the minion answers again (SIGCONT),
// and 'job reconcile' replaces the entry with the minion's own result.
func TestAsyncReconcileAfterPartition(t *testing.T) {
	t.Parallel()
	f := startIdleFleet(t, "web1")
	web1 := mustMinion(t, f, "web1")
	g := newGate(t, "go")
	// Open a moment into the partition, so that the job surely ends
	// during it (a plain 'sleep 3' could end before it on a busy
	// machine).
	id := callAsync(t, f, "web1", "command.run", g.wait()+"; sleep 3; echo done")
	j := waitJob(t, f, id, readyTimeout, "submitted", func(j jobView) bool { return j.Minions["web1"].MinionJobID != "" })
	minionJob := j.Minions["web1"].MinionJobID

	pid := web1.p.Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	partitioned := time.Now()
	// Runs before the fleet is stopped: a stopped daemon would not see
	// SIGTERM.
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGCONT) })
	g.open(t)
	waitFile(t, filepath.Join(web1.dir, "spool", minionJob, "result.json"))

	j, code, stderr := jobStatus(t, f, id, "--wait", "--timeout", "150s")
	e := j.Minions["web1"]
	if j.State != "FINISHED" || code != 1 || e.kind() != "unreachable" || e.MinionJobID != minionJob {
		t.Fatalf("job status --wait: exit %d, job %s; want FINISHED, web1 unreachable with its minion job\n%s", code, j, stderr)
	}
	before := *e.Error

	// The point is the passage of time: a partition of 75 s.
	time.Sleep(time.Until(partitioned.Add(75 * time.Second)))
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	// The daemon works through the connections that waited for it:
	// reconcile until it answers.
	var out []byte
	deadline := time.Now().Add(readyTimeout)
	for {
		cmd, stdout, stderr := overlordCmd(f, "job", "reconcile", id, "-o", "json")
		code = exitCode(t, cmd)
		out = stdout.Bytes()
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job reconcile: exit %d after %s\n%s%s", code, readyTimeout, out, stderr)
		}
		time.Sleep(time.Second)
	}
	var got jobView
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("job reconcile -o json: %v\n%s", err, out)
	}
	e = got.Minions["web1"]
	if !e.Reconciled || !e.OK || e.stdout() != "done\n" || e.ErrorBeforeReconcile == nil || *e.ErrorBeforeReconcile != before ||
		e.ErrorBeforeReconcile.Kind != "unreachable" || got.Summary != (summaryView{Total: 1, OK: 1}) {
		t.Errorf("reconciled job %s; want web1 reconciled, ok, stdout \"done\\n\", error_before_reconcile the unreachable it had", got)
	}
	// job status shows the same from now on.
	if j, code, _ := jobStatus(t, f, id); code != 0 || !j.Minions["web1"].Reconciled {
		t.Errorf("job status after reconcile: exit %d, %s", code, j)
	}
}
