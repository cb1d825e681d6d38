package minion

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// Calls that outlive their wait are async jobs of the daemon: they count
// against the running-jobs limits as submitted jobs do. Past the limit a
// call that outlives its wait is not kept (its method is stopped, with an
// error that says why), so one identity cannot pile up jobs without
// bound by calling with a short wait.
func TestHeldCallRunningJobLimits(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	a.maxRunning, a.maxPerCaller = 5, 2
	var kept []*Job
	defer func() {
		for _, j := range kept {
			a.cancel(j.ID, "", "")
		}
		for _, j := range kept {
			waitState(t, a, j.ID, isFinished)
		}
	}()
	for i := range 2 {
		_, job, err := callHeldNow(t, a, context.Background(), fmt.Sprintf("lim%d", i), 50*time.Millisecond, "sleep 60")
		if err != nil || job == nil {
			t.Fatalf("call %d: job %v, err %v: want it kept", i, job, err)
		}
		kept = append(kept, job)
	}
	res, job, err := callHeldNow(t, a, context.Background(), "lim2", 50*time.Millisecond, "sleep 60")
	if job != nil {
		kept = append(kept, job)
		t.Fatalf("a third held call of one identity was kept as job %s past the limit of 2 per identity", job.ID)
	}
	if status.KindOf(err) != status.KindInternal || !strings.Contains(err.Error(), "could not be kept as a job") ||
		!strings.Contains(err.Error(), "busy with 2 async jobs of tester") {
		t.Fatalf("a third held call: res %v, err %v; want kind internal saying the minion is busy", res, err)
	}
	// Its adopter is told so too, and not as busy (which would make a
	// driver try again for ever).
	if _, err := a.adopt("tester", "lim2"); err == nil {
		t.Fatal("adopt of a call not kept: no error")
	}
	if js, _ := a.store.running(); len(js) != 2 {
		t.Fatalf("%d jobs running, want 2", len(js))
	}
	// A Submit of the same identity is refused the same way: held calls count.
	if _, _, err := a.submit("tester", &rpc.SubmitParams{OriginJobID: "lim3", Module: "test", Method: "sleep", Args: map[string]any{"seconds": 30}}); status.KindOf(err) != status.KindInternal {
		t.Fatalf("submit past the limit, held calls counted: %v", err)
	}
}

// A Minion.Call whose origin already has a job on the minion (the call
// was kept, or submitted) is refused, not run again: a client that sends
// the same origin twice cannot make a method run twice.
func TestHeldCallSameOriginNotRunTwice(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	runs := filepath.Join(t.TempDir(), "runs")
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	_, job, err := callHeldNow(t, a, gone, "dup", time.Minute, "echo run >> "+runs)
	if err != nil || job == nil {
		t.Fatalf("job %v, err %v: want the call kept", job, err)
	}
	waitState(t, a, job.ID, isFinished)
	res, again, err := callHeldNow(t, a, context.Background(), "dup", 10*time.Second, "echo run >> "+runs)
	if again != nil || status.KindOf(err) != status.KindBadArgs || !strings.Contains(err.Error(), job.ID) {
		t.Errorf("a second call of origin dup: res %v, job %v, err %v; want bad_args naming job %s", res, again, err, job.ID)
	}
	sub := submit(t, a, "sub", "test", "ping", nil)
	waitState(t, a, sub.ID, isFinished)
	if _, _, err := callHeldNow(t, a, context.Background(), "sub", 10*time.Second, "echo run >> "+runs); status.KindOf(err) != status.KindBadArgs {
		t.Errorf("a call of a submitted job's origin: %v, want bad_args", err)
	}
	if got, _ := os.ReadFile(runs); string(got) != "run\n" {
		t.Errorf("ran %q, want once", got)
	}
}

// A cancel of a held job that comes between its record in minion.db and
// the daemon's note of it (a client that read the job ID from
// Minion.List) still stops it.
func TestHeldCallCancelWhileRecorded(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	heldRecorded = func(j Job) {
		if _, err := a.cancel(j.ID, status.KindCancelled, "tester"); err != nil {
			t.Errorf("cancel: %v", err)
		}
	}
	defer func() { heldRecorded = nil }()
	_, job, err := callHeldNow(t, a, context.Background(), "race", 50*time.Millisecond, "sleep 60")
	heldRecorded = nil
	if job == nil || err != nil {
		t.Fatalf("job %v, err %v: want the call kept", job, err)
	}
	st := waitState(t, a, job.ID, isFinished)
	if st.OK || st.Error == nil || st.Error.Kind != status.KindCancelled {
		t.Fatalf("status %+v: want cancelled", st)
	}
}

// Adopt, the method's end, cancel and shutdown race each other on many
// calls at once: every call ends once, with a result or a job, adopt
// finds that job or says lost, the method runs once, and the shutdown
// waits for the held jobs' outcomes (run with -race).
func TestHeldCallRaces(t *testing.T) {
	dir := t.TempDir()
	a := newAsync(t, dir)
	marks := t.TempDir()
	const n = 24
	type outcome struct {
		job *Job
		err error
		res any
	}
	outs := make([]outcome, n)
	var wg sync.WaitGroup
	for i := range n {
		origin := fmt.Sprintf("r%d", i)
		runs := filepath.Join(marks, origin)
		wg.Add(3)
		go func() {
			defer wg.Done()
			// The command ends about when the wait does.
			res, job, err := callHeldNow(t, a, context.Background(), origin, time.Duration(20+i%5*10)*time.Millisecond,
				"echo run >> "+runs+"; sleep 0.0"+strconv.Itoa(2+i%4))
			outs[i] = outcome{job, err, res}
		}()
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i%7) * 5 * time.Millisecond)
			j, err := a.adopt("tester", origin)
			if err != nil && status.KindOf(err) != status.KindLost {
				t.Errorf("adopt %s: %v", origin, err)
			}
			if err == nil && i%3 == 0 {
				if _, err := a.cancel(j.ID, status.KindCancelled, "tester"); err != nil {
					t.Errorf("cancel %s: %v", j.ID, err)
				}
			}
		}()
		go func() {
			defer wg.Done()
			if js, err := a.list(0, "tester"); err == nil && i%4 == 0 {
				for _, j := range js {
					_, _ = a.cancel(j.JobID, status.KindCancelled, "tester")
				}
			}
		}()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	a.stopHeld(ctx)
	cancel()
	for i, o := range outs {
		if (o.job == nil) == (o.err == nil && o.res == nil) {
			t.Errorf("call %d: %+v: want a result or a job", i, o)
		}
		if o.job != nil {
			if j, err := a.store.get(o.job.ID); err != nil || j.State != status.Finished {
				t.Errorf("call %d: job %+v after the shutdown, err %v: want FINISHED", i, j, err)
			}
		}
		if got, _ := os.ReadFile(filepath.Join(marks, fmt.Sprintf("r%d", i))); strings.Count(string(got), "run") > 1 {
			t.Errorf("call %d ran %d times", i, strings.Count(string(got), "run"))
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}
