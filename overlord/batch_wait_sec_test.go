package overlord_test

import (
	"context"
	"testing"
	"time"

	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

// The pause between batches (--batch-wait) does not keep a synchronous
// call waiting past its --timeout: when the wait ends during the pause,
// the call returns, the job not finished, and the batches not started are
// recorded unsent for the driver that carries the job on.
func TestCallBatchWaitEndsAtTimeout(t *testing.T) {
	o := newOverlord(t)
	for _, n := range []string{"m1", "m2", "m3"} {
		startMinion(t, o, n)
	}
	p, err := o.Prepare(overlord.CallSpec{Target: "*", Module: "test", Method: "ping", Timeout: 500 * time.Millisecond,
		Batch: overlord.BatchSpec{Size: overlord.Count{N: 1}, Wait: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	job := callReturns(t, context.Background(), o, p, nil, "a batched call with --timeout 500ms, in its --batch-wait of an hour,")
	if !job.Minions["m1"].OK {
		t.Errorf("m1: %+v", job.Minions["m1"])
	}
	if job.State == status.Finished {
		t.Fatalf("job %+v: want it carried on, not FINISHED", job)
	}
	rec, entries, err := o.Store.Job(job.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Unsent) != 2 || rec.Unsent[0] != "m2" || rec.Unsent[1] != "m3" {
		t.Errorf("unsent %v, want [m2 m3]", rec.Unsent)
	}
	for _, n := range []string{"m2", "m3"} {
		if e := entries[n]; e.State == status.Finished || e.Batch == 0 {
			t.Errorf("%s: %+v, want open with its batch", n, e)
		}
	}
}
