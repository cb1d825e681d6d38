package minion

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/modules/builtin"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// callHeldNow makes a Minion.Call with an origin on a, as Service.Call
// does, with the given wait.
func callHeldNow(t *testing.T, a *asyncJobs, ctx context.Context, origin string, wait time.Duration, words ...string) (any, *Job, error) {
	t.Helper()
	p := &rpc.CallParams{Module: "command", Method: "run", Args: map[string]any{"cmd": strings.Join(words, " ")}, OriginJobID: origin,
		TimeoutMS: wait.Milliseconds(), JobTimeoutMS: time.Minute.Milliseconds()}
	reg := builtin.Registry()
	return a.callHeld(ctx, "tester", p, wait, func(ctx context.Context) (any, error) {
		return reg.Call(ctx, p.Module, p.Method, p.Args, nil)
	})
}

// A call that answers within its wait records nothing: there is no job to
// adopt, and adopting says so (kind lost) rather than starting one.
func TestHeldCallAnsweredInTime(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	res, job, err := callHeldNow(t, a, context.Background(), "o1", 10*time.Second, "echo hi")
	if err != nil || job != nil || res == nil {
		t.Fatalf("res %v, err %v, job %v", res, err, job)
	}
	if _, err := a.adopt("tester", "o1"); status.KindOf(err) != status.KindLost {
		t.Fatalf("adopt of a call that answered: %v, want kind lost", err)
	}
	if js, _ := a.store.list(10, ""); len(js) != 0 {
		t.Errorf("jobs recorded: %+v", js)
	}
}

// A call past its wait becomes the job of its origin: adopt finds it,
// a Submit of the same origin gets it too (nothing runs twice), its
// output goes on in the spool, and its result is recorded.
func TestHeldCallDetached(t *testing.T) {
	dir := t.TempDir()
	a := newAsync(t, dir)
	defer a.Close()
	marks := t.TempDir()
	runs, gate := filepath.Join(marks, "runs"), filepath.Join(marks, "gate")
	res, job, err := callHeldNow(t, a, context.Background(), "o2", 200*time.Millisecond,
		"echo run >> "+runs+"; echo before; while [ ! -e "+gate+" ]; do sleep 0.02; done; echo after")
	if err != nil || res != nil || job == nil {
		t.Fatalf("res %v, err %v, job %v: want detached", res, err, job)
	}
	adopted, err := a.adopt("tester", "o2")
	if err != nil || adopted.ID != job.ID {
		t.Fatalf("adopt: %+v, %v; want job %s", adopted, err, job.ID)
	}
	again, created, err := a.submit("tester", &rpc.SubmitParams{OriginJobID: "o2", Module: "command", Method: "run", Args: map[string]any{"cmd": "true"}})
	if err != nil || created || again.ID != job.ID {
		t.Fatalf("submit of the same origin: %+v created %v err %v", again, created, err)
	}
	// The output so far is in the spool: a follower sees it.
	waitState(t, a, job.ID, func(st rpc.JobStatus) bool { return strings.Contains(st.Output, "before") })
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, a, job.ID, func(st rpc.JobStatus) bool { return st.State == status.Finished })
	if !st.OK || !strings.Contains(string(st.Result), `"stdout":"before\nafter\n"`) {
		t.Fatalf("status %+v %s", st, st.Result)
	}
	if got, _ := os.ReadFile(runs); string(got) != "run\n" {
		t.Errorf("ran %q, want once", got)
	}
	if held, _ := runnerLockHeld(a.dir(job.ID)); held {
		t.Error("the job's lock is still held after it finished")
	}
}

// A caller that goes away before the answer (Ctrl-C) leaves the call
// running as a job; one that finishes after the caller left keeps its
// result for the adopter.
func TestHeldCallCallerGone(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, job, err := callHeldNow(t, a, ctx, "o3", time.Minute, "echo quick")
	if job == nil || err != nil || res != nil {
		t.Fatalf("res %v, err %v, job %v: want a job", res, err, job)
	}
	adopted, err := a.adopt("tester", "o3")
	if err != nil || adopted.ID != job.ID {
		t.Fatalf("adopt: %+v, %v", adopted, err)
	}
	st := waitState(t, a, job.ID, func(st rpc.JobStatus) bool { return st.State == status.Finished })
	if !st.OK || !strings.Contains(string(st.Result), "quick") {
		t.Fatalf("status %+v %s", st, st.Result)
	}
}

// Cancelling a held job cancels its method (and signals nobody: the
// daemon runs it); the job ends cancelled.
func TestHeldCallCancel(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	_, job, _ := callHeldNow(t, a, context.Background(), "o4", 100*time.Millisecond, "sleep 60")
	if job == nil {
		t.Fatal("not detached")
	}
	if _, err := a.cancel(job.ID, status.KindCancelled, "tester"); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, a, job.ID, func(st rpc.JobStatus) bool { return st.State == status.Finished })
	if st.OK || st.Error == nil || st.Error.Kind != status.KindCancelled {
		t.Fatalf("status %+v", st)
	}
}

// A shutdown gives held jobs until its context ends, then cancels them:
// they end lost, saying the minion stopped.
func TestHeldCallShutdown(t *testing.T) {
	dir := t.TempDir()
	a := newAsync(t, dir)
	_, job, _ := callHeldNow(t, a, context.Background(), "o5", 100*time.Millisecond, "sleep 60")
	if job == nil {
		t.Fatal("not detached")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	a.stopHeld(ctx)
	if _, _, err := a.callHeld(context.Background(), "tester", &rpc.CallParams{Module: "test", Method: "ping", OriginJobID: "o6"}, time.Second,
		func(context.Context) (any, error) { return nil, nil }); err == nil {
		t.Error("a call with an origin was taken while the minion stops")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := newAsync(t, dir)
	defer b.Close()
	j, err := b.store.get(job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != status.Finished || j.Error == nil || j.Error.Kind != status.KindLost || !strings.Contains(j.Error.Message, "minion stopped") {
		t.Fatalf("job after shutdown: %+v", j)
	}
}

// A held call's job is recorded a moment before its spool and lock are
// made: a settle in between (the sweeper, a Status) must see it running
// in this daemon, not lost ("the minion stopped while this call ran").
func TestHeldCallSettledWhileRecorded(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	key := string(originKey("tester", "o9"))
	a.heldMu.Lock()
	a.calls[key] = &heldCall{detach: make(chan struct{}), registered: make(chan struct{})}
	a.heldMu.Unlock()
	job, _, err := a.store.submit("tester", "o9", nil, func(id string) Job {
		// As registerHeld records it: with the command's process group
		// (here one that is no runner), before the spool exists.
		return Job{ID: id, OriginJobID: "o9", Caller: "tester", Module: "test", Method: "ping",
			State: status.Running, CreatedAt: time.Now().Add(-time.Hour), InProcess: true, PID: 1}
	})
	if err != nil {
		t.Fatal(err)
	}
	if j, err := a.settle(job, false); err != nil || j.State == status.Finished {
		t.Fatalf("settled while being recorded: %+v, %v", j, err)
	}
	// Once no daemon runs it (this one forgot it, as after a crash), it is lost.
	a.heldMu.Lock()
	delete(a.calls, key)
	a.heldMu.Unlock()
	if j, err := a.settle(job, false); err != nil || j.State != status.Finished || j.Error == nil || j.Error.Kind != status.KindLost {
		t.Fatalf("settled with nobody running it: %+v, %v", j, err)
	}
}
