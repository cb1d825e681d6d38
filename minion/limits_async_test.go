package minion

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// Past the running-jobs limits, in all and per identity, Submit is
// refused as busy; a retried submit of a job already made is not.
func TestAsyncRunningJobLimits(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	a.maxRunning, a.maxPerCaller = 3, 2
	var started []Job
	sub := func(caller, origin string) (Job, error) {
		j, created, err := a.submit(caller, &rpc.SubmitParams{OriginJobID: origin, Module: "test", Method: "sleep", Args: map[string]any{"seconds": 30}})
		if created {
			started = append(started, j)
		}
		return j, err
	}
	defer func() {
		for _, j := range started {
			a.cancel(j.ID, "", "")
		}
		for _, j := range started {
			waitState(t, a, j.ID, isFinished)
		}
	}()
	for _, origin := range []string{"a1", "a2"} {
		if _, err := sub("a", origin); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sub("a", "a3"); status.KindOf(err) != status.KindInternal || !strings.Contains(err.Error(), "busy with 2 async jobs of a") || !errors.Is(err, rpc.ErrBusy) {
		t.Errorf("a third job of one identity: %v, want busy (rpc.ErrBusy, so the driver submits again)", err)
	} else if data, _ := rpc.NewError(err, nil).Data.(rpc.ErrorData); !data.Busy {
		t.Errorf("a third job of one identity: the JSON-RPC error's data %+v does not say busy", data)
	}
	if _, err := sub("a", "a1"); err != nil {
		t.Errorf("a retried submit: %v", err)
	}
	if _, err := sub("b", "b1"); err != nil {
		t.Errorf("another identity's job: %v", err)
	}
	if _, err := sub("c", "c1"); status.KindOf(err) != status.KindInternal || !strings.Contains(err.Error(), "busy with 3 async jobs") || !errors.Is(err, rpc.ErrBusy) {
		t.Errorf("a job past the minion's limit: %v, want busy", err)
	}
	// Room again once one ends.
	if _, err := a.cancel(started[0].ID, "", ""); err != nil {
		t.Fatal(err)
	}
	waitState(t, a, started[0].ID, isFinished)
	if _, err := sub("c", "c1"); err != nil {
		t.Errorf("after a job ended: %v", err)
	}
}

// A runner that cannot stop its job at the time limit (stopped here)
// is cancelled by the sweeper, and the job ends with kind timeout.
func TestAsyncSweeperEnforcesTimeout(t *testing.T) {
	t.Parallel()
	a := newAsync(t, t.TempDir())
	defer a.Close()
	a.slack = 100 * time.Millisecond
	j, _, err := a.submit("tester", &rpc.SubmitParams{OriginJobID: "o1", Module: "test", Method: "sleep", TimeoutMS: 1000,
		Args: map[string]any{"seconds": 60}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(j.PID, syscall.SIGKILL) })
	if err := syscall.Kill(j.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := a.status(&rpc.StatusParams{JobIDs: []string{j.ID}, MaxOutput: -1}, "")
		if err != nil {
			t.Fatal(err)
		}
		if st[0].State == status.Finished {
			if st[0].Error == nil || st[0].Error.Kind != status.KindTimeout {
				t.Errorf("job ended %+v, want kind timeout", st[0].Error)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s with a stopped runner still %s %s after its time limit", j.ID, st[0].State, time.Since(j.CreatedAt).Round(time.Second))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
