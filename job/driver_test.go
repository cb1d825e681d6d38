package job_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overlordhq/overlord/job"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/jobs/jobstest"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// downMinions answers as a fleet past its deadline does: g1 took the job
// and then its gateway went down, g2's gateway was down from the start,
// d1 (direct) took the job and then went down itself.
type downMinions struct {
	mu        sync.Mutex
	submitted map[string]bool
}

func noGateway(minion string) error {
	return status.Errorf(status.KindUnreachable, "no gateway of %s could be reached: via gateway gw1: dial tcp 127.0.0.1:9: connection refused", minion)
}

func (f *downMinions) Call(ctx context.Context, minion, method string, params, reply any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case method == "Minion.Submit" && minion != "g2" && !f.submitted[minion]:
		f.submitted[minion] = true
		*reply.(*rpc.SubmitReply) = rpc.SubmitReply{JobID: "m-" + minion, Created: true}
		return nil
	case minion == "d1":
		return status.Errorf(status.KindUnreachable, "dial tcp 127.0.0.1:9: connection refused")
	default:
		return noGateway(minion)
	}
}

// TestDriverGatewaysDownPastDeadline: at an async job's deadline, a
// minion whose gateways were down at the last try ends unreachable,
// naming them, whether the job reached it or not; a direct minion that
// went quiet ends timeout, as always.
func TestDriverGatewaysDownPastDeadline(t *testing.T) {
	t.Parallel()
	store := jobstest.New(t)
	k := job.New(store, filepath.Dir(store.Path()))
	deadline := time.Now().Add(2 * time.Second).UTC()
	rec := &jobs.Record{ID: "j1", Module: "test", Method: "ping", Async: true, Forks: 4, Deadline: &deadline, Caller: "ovl"}
	if err := k.Create(rec, []string{"g1", "g2", "d1"}); err != nil {
		t.Fatal(err)
	}
	f := &downMinions{submitted: map[string]bool{}}
	d := &job.Driver{Keeper: k, Timings: job.Timings{UnreachableAfter: time.Hour}, Connect: func(jobs.Record, []jobs.Minion) (job.Link, error) {
		return job.Link{Client: f}, nil
	}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.Drive(ctx, "j1", nil); err != nil {
		t.Fatal(err)
	}
	hdr, entries, err := store.Job("j1")
	if err != nil {
		t.Fatal(err)
	}
	if hdr.State != status.Finished {
		t.Fatalf("job %s, want FINISHED", hdr.State)
	}
	for name, kind := range map[string]status.Kind{"g1": status.KindUnreachable, "g2": status.KindUnreachable, "d1": status.KindTimeout} {
		e := entries[name]
		if e.Error == nil || e.Error.Kind != kind || !strings.Contains(e.Error.Message, "deadline") {
			t.Errorf("%s: %+v, want %s at the deadline", name, e, kind)
			continue
		}
		if kind == status.KindUnreachable && !strings.Contains(e.Error.Message, "gateway gw1") {
			t.Errorf("%s: %q does not name the gateway", name, e.Error.Message)
		}
	}
}
