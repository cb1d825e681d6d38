//go:build linux

package e2e

import (
	"bufio"
	"encoding/json"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// recordedWithin is how soon a minion's answer must be in overlord.db:
// results are written in batches "every 1024 results or 250 ms, whichever
// comes first" (docs/cli.md, docs/jobs.md), so a second is generous.
const recordedWithin = 2 * time.Second

// TestCallResultsSoFar: 'job status' during a synchronous call shows the
// results so far (docs/cli.md): a minion that has answered shows FINISHED
// while another one still works.
func TestCallResultsSoFar(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2")
	g := newGate(t, "go")
	// Each minion runs the command in its state directory: web2 waits.
	call, _, stderr := overlordCmd(f, "call", "*", "command.run",
		"case $PWD in */web2) "+g.wait()+";; esac; echo done", "-o", "ndjson")
	call.Stdout = nil
	out, err := call.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := call.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	first := make(chan string, 1)
	go func() {
		if sc.Scan() {
			first <- sc.Text()
		}
		close(first)
	}()
	defer func() {
		g.open(t)
		for range first {
		}
		for sc.Scan() {
		}
		if err := call.Wait(); err != nil {
			t.Errorf("call: %v\n%s", err, stderr)
		}
	}()
	var line struct {
		Minion string `json:"minion"`
		JobID  string `json:"job_id"`
	}
	select {
	case l := <-first:
		if err := json.Unmarshal([]byte(l), &line); err != nil || line.Minion != "web1" {
			t.Fatalf("first line %q, want web1's result", l)
		}
	case <-time.After(readyTimeout):
		t.Fatalf("no result from web1 after %s", readyTimeout)
	}
	jobs := jobList(t, f)
	if len(jobs) != 1 {
		t.Fatalf("job list: %d jobs, want 1", len(jobs))
	}
	waitJob(t, f, jobs[0].JobID, recordedWithin, "showing web1's answer", func(j jobView) bool {
		return j.Minions["web1"].State == "FINISHED" && j.Minions["web1"].OK
	})
}

// TestAsyncCancelWithHungMinion: one minion that hangs (SIGSTOP: it
// accepts connections and never answers) neither hides the others'
// progress nor holds up a cancel: the minion job IDs that came back are
// in overlord.db at once, and 'job cancel' stops the command on the
// healthy minion at once, while the driver is still trying to reach the
// hung one, which ends cancelled ("the driver skips minions it has not
// reached", docs/jobs.md).
func TestAsyncCancelWithHungMinion(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2")
	web1 := mustMinion(t, f, "web1")
	if err := web1.p.signal(syscall.SIGSTOP); err != nil { // fleet.close sends SIGCONT
		t.Fatal(err)
	}
	token := filepath.Join(f.dir, "hung")
	id := callAsync(t, f, "*", "command.run", "sleep 300; : "+shellQuote(token))
	deadline := time.Now().Add(readyTimeout)
	for len(findProcs(token)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the command is not running on web2 after %s", readyTimeout)
		}
		time.Sleep(pollEvery)
	}
	waitJob(t, f, id, recordedWithin, "showing web2's minion job", func(j jobView) bool {
		return j.Minions["web2"].MinionJobID != ""
	})

	if out, err := f.overlord("job", "cancel", id); err != nil {
		t.Fatalf("job cancel: %v\n%s", err, out)
	}
	var pids []int
	for _, p := range findProcs(token) {
		pids = append(pids, p.pid)
	}
	if err := waitGone(5*time.Second, pids...); err != nil {
		t.Errorf("web2's command after the cancel: %v", err)
	}
	if err := web1.p.signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	j := waitFinished(t, f, id, 1)
	for _, n := range []string{"web1", "web2"} {
		if e := j.Minions[n]; e.kind() != "cancelled" {
			t.Errorf("%s: %+v, want kind cancelled", n, e.Error)
		}
	}
}
