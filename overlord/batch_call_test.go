package overlord_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

// A synchronous batched call runs one batch after the other: batch k
// starts once every result of the batches before it is in, and each
// entry carries its batch number, printed and recorded.
func TestCallBatches(t *testing.T) {
	o := newOverlord(t)
	names := []string{"m1", "m2", "m3", "m4", "m5"}
	for _, n := range names {
		startMinion(t, o, n)
	}
	var events []string
	spec := overlord.CallSpec{Target: "m*", Module: "test", Method: "ping", Forks: 8,
		Batch:   overlord.BatchSpec{Size: overlord.Count{N: 2}},
		OnBatch: func(k, n, started int) { events = append(events, fmt.Sprintf("batch %d/%d of %d", k, n, started)) }}
	p, err := o.Prepare(spec)
	if err != nil {
		t.Fatal(err)
	}
	results := map[string]status.Result{}
	job, err := o.Call(context.Background(), p, func(name string, r status.Result) {
		events = append(events, fmt.Sprintf("%s in %d", name, r.Batch))
		results[name] = r
	})
	if err != nil {
		t.Fatal(err)
	}
	// Within a batch, results come in any order.
	want := [][]string{{"batch 1/3 of 2"}, {"m1 in 1", "m2 in 1"}, {"batch 2/3 of 4"}, {"m3 in 2", "m4 in 2"}, {"batch 3/3 of 5"}, {"m5 in 3"}}
	i := 0
	for _, group := range want {
		if i+len(group) > len(events) {
			t.Fatalf("events %v, want %v", events, want)
		}
		got := map[string]bool{}
		for _, e := range events[i : i+len(group)] {
			got[e] = true
		}
		for _, e := range group {
			if !got[e] {
				t.Fatalf("events %v, want %v", events, want)
			}
		}
		i += len(group)
	}
	if job.Summary != (status.Summary{Total: 5, OK: 5}) {
		t.Errorf("summary %+v", job.Summary)
	}
	rec, entries, err := o.Store.Job(job.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(entries, job.Minions) || !reflect.DeepEqual(entries, results) {
		t.Errorf("recorded entries differ from the printed ones:\n%+v\n%+v\n%+v", entries, job.Minions, results)
	}
	for n, k := range map[string]int{"m1": 1, "m2": 1, "m3": 2, "m4": 2, "m5": 3} {
		if e := entries[n]; e.Batch != k || !e.OK {
			t.Errorf("%s: %+v, want ok in batch %d", n, e, k)
		}
	}
	if rec.Batch == nil || rec.Batch.Size != 2 || rec.Batch.Count != 3 || rec.Batch.MaxFail != -1 || rec.Batch.Done < 2 {
		t.Errorf("recorded plan %+v", rec.Batch)
	}
}

// --max-fail 0: a failure in batch 1 and the later batches are skipped,
// each skipped minion with its result, and the job is not ok.
func TestCallBatchesMaxFail(t *testing.T) {
	o := newOverlord(t)
	addDeadMinion(t, o, "m1")
	for _, n := range []string{"m2", "m3", "m4", "m5"} {
		startMinion(t, o, n)
	}
	zero := overlord.Count{N: 0}
	p, err := o.Prepare(overlord.CallSpec{Target: "*", Module: "test", Method: "ping", ConnectTimeout: time.Second,
		Batch: overlord.BatchSpec{Size: overlord.Count{N: 2}, MaxFail: &zero}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	job, err := o.Call(context.Background(), p, func(name string, r status.Result) { seen[name]++ })
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"m1", "m2", "m3", "m4", "m5"} {
		if seen[n] != 1 {
			t.Errorf("%s: %d results handed over, want 1", n, seen[n])
		}
	}
	if e := job.Minions["m1"]; e.Error == nil || e.Error.Kind != status.KindUnreachable || e.Batch != 1 {
		t.Errorf("m1: %+v", e)
	}
	if e := job.Minions["m2"]; !e.OK || e.Batch != 1 {
		t.Errorf("m2: %+v", e)
	}
	for n, k := range map[string]int{"m3": 2, "m4": 2, "m5": 3} {
		e := job.Minions[n]
		if !e.Skipped() || e.Batch != k {
			t.Errorf("%s: %+v, want skipped in batch %d", n, e, k)
		}
	}
	if want := (status.Summary{Total: 5, OK: 1, Failed: 4, Skipped: 3}); job.Summary != want {
		t.Errorf("summary %+v, want %+v", job.Summary, want)
	}
	if job.Summary.ExitCode() != status.ExitFailed {
		t.Errorf("exit code %d, want 1", job.Summary.ExitCode())
	}
	rec, _, _ := o.Store.Job(job.JobID)
	if rec.State != status.Finished || rec.Summary != job.Summary {
		t.Errorf("recorded %s %+v", rec.State, rec.Summary)
	}
}

// Interrupted while it waits between batches, a batched call returns at
// once, the minions not started cancelled.
func TestCallBatchesInterrupted(t *testing.T) {
	o := newOverlord(t)
	for _, n := range []string{"m1", "m2", "m3"} {
		startMinion(t, o, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := o.Prepare(overlord.CallSpec{Target: "*", Module: "test", Method: "ping",
		Batch: overlord.BatchSpec{Size: overlord.Count{N: 1}, Wait: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	job := callReturns(t, ctx, o, p, func(name string, r status.Result) {
		if name == "m1" {
			cancel() // Ctrl-C as batch 2 waits its hour
		}
	}, "an interrupted batched call")
	if !job.Minions["m1"].OK {
		t.Errorf("m1: %+v", job.Minions["m1"])
	}
	for _, n := range []string{"m2", "m3"} {
		if e := job.Minions[n]; e.State != status.Finished || e.Error == nil || e.Error.Kind != status.KindCancelled || e.Batch == 0 {
			t.Errorf("%s: %+v, want cancelled with its batch", n, e)
		}
	}
	if job.State != status.Finished || job.Summary.Pending != 0 {
		t.Errorf("job %s %+v", job.State, job.Summary)
	}
}

// A batched synchronous call records, before it sends a batch, that the
// batches after it have not been sent: if the call dies, its driver
// submits those rather than adopting calls that never came.
func TestCallBatchesRecordUnsent(t *testing.T) {
	o := newOverlord(t)
	for _, n := range []string{"m1", "m2", "m3"} {
		startMinion(t, o, n)
	}
	var jobID string
	var seen [][]string
	spec := overlord.CallSpec{Target: "m*", Module: "test", Method: "ping",
		Batch: overlord.BatchSpec{Size: overlord.Count{N: 1}},
		OnBatch: func(k, n, started int) {
			rec, err := o.Store.Header(jobID)
			if err != nil {
				t.Error(err)
			}
			seen = append(seen, rec.Unsent)
		}}
	p, err := o.Prepare(spec)
	if err != nil {
		t.Fatal(err)
	}
	jobID = p.JobID
	if _, err := o.Call(context.Background(), p, nil); err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"m2", "m3"}, {"m3"}, nil}
	if len(seen) != len(want) {
		t.Fatalf("unsent as each batch started: %q, want %q", seen, want)
	}
	for i := range want {
		if !slices.Equal(seen[i], want[i]) {
			t.Errorf("unsent as batch %d started: %q, want %q", i+1, seen[i], want[i])
		}
	}
}

// callReturns runs o.Call and returns its job, failing the test if the
// call has not returned 30s later (what describes the call): a call that
// should stop waiting but does not is a failure, not a hang.
func callReturns(t *testing.T, ctx context.Context, o *overlord.Overlord, p *overlord.Prepared, onResult func(string, status.Result), what string) status.Job {
	t.Helper()
	done := make(chan status.Job, 1)
	go func() {
		job, err := o.Call(ctx, p, onResult)
		if err != nil {
			t.Error(err)
		}
		done <- job
	}()
	select {
	case job := <-done:
		return job
	case <-time.After(30 * time.Second):
		t.Fatalf("%s still runs 30s later", what)
		return status.Job{}
	}
}
