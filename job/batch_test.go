package job

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/status"
)

// Entries of a 5-minion job, 2 a batch.
var (
	pending = func(k int) status.Result { return status.Result{State: status.Running, Batch: k} }
	okIn    = func(k int) status.Result { return status.Result{State: status.Finished, OK: true, Batch: k} }
	failIn  = func(k int) status.Result {
		return status.Result{State: status.Finished, Batch: k, Error: status.Errorf(status.KindModuleError, "exit 1")}
	}
	submitted = func(k int) status.Result { return status.Result{State: status.Running, MinionJobID: "mj", Batch: k} }
)

func TestPlanBatch(t *testing.T) {
	now := time.Date(2026, 11, 21, 14, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	plan := jobs.Batch{Size: 2, Count: 3, MaxFail: -1}
	with := func(f func(*jobs.Batch)) jobs.Batch { b := plan; f(&b); return b }
	entries := func(a, b, c, d, e status.Result) map[string]status.Result {
		return map[string]status.Result{"a": a, "b": b, "c": c, "d": d, "e": e}
	}
	tests := []struct {
		name    string
		plan    jobs.Batch
		entries map[string]status.Result
		want    BatchStep // Skip compared by names only
		skip    []string
	}{
		{"a new job starts batch 1", plan,
			entries(pending(1), pending(1), pending(2), pending(2), pending(3)),
			BatchStep{Batch: 1, Batches: 3, Start: []string{"a", "b"}}, nil},
		{"batch 1 running", plan,
			entries(okIn(1), submitted(1), pending(2), pending(2), pending(3)),
			BatchStep{Batch: 1, Batches: 3}, nil},
		{"a driver that died mid-submit starts the rest of its batch", plan,
			entries(submitted(1), pending(1), pending(2), pending(2), pending(3)),
			BatchStep{Batch: 1, Batches: 3, Start: []string{"b"}}, nil},
		{"batch 1 over: batch 2 starts", plan,
			entries(okIn(1), okIn(1), pending(2), pending(2), pending(3)),
			BatchStep{Batch: 2, Batches: 3, Start: []string{"c", "d"}, Done: 1}, nil},
		{"failures without --max-fail do not stop anything", plan,
			entries(failIn(1), failIn(1), okIn(2), failIn(2), pending(3)),
			BatchStep{Batch: 3, Batches: 3, Start: []string{"e"}, Done: 2}, nil},
		{"--max-fail 0: the first failure skips the batches not started", with(func(b *jobs.Batch) { b.MaxFail, b.MaxFailSpec = 0, "0" }),
			entries(okIn(1), failIn(1), pending(2), pending(2), pending(3)),
			BatchStep{Batch: 2, Batches: 3, Done: 1, Over: true}, []string{"c", "d", "e"}},
		{"--max-fail 1: one failure is not more than 1", with(func(b *jobs.Batch) { b.MaxFail = 1 }),
			entries(okIn(1), failIn(1), pending(2), pending(2), pending(3)),
			BatchStep{Batch: 2, Batches: 3, Start: []string{"c", "d"}, Done: 1}, nil},
		{"--max-fail 1: two failures are", with(func(b *jobs.Batch) { b.MaxFail = 1 }),
			entries(okIn(1), failIn(1), okIn(2), failIn(2), pending(3)),
			BatchStep{Batch: 3, Batches: 3, Done: 2, Over: true}, []string{"e"}},
		{"--max-fail crossed mid-batch: the batch running finishes", with(func(b *jobs.Batch) { b.MaxFail = 0 }),
			entries(failIn(1), submitted(1), pending(2), pending(2), pending(3)),
			BatchStep{Batch: 1, Batches: 3}, nil},
		{"--batch-wait: the previous batch ended 3s ago", with(func(b *jobs.Batch) { b.WaitMS, b.Done, b.DoneAt = 10000, 1, ago(3*time.Second) }),
			entries(okIn(1), okIn(1), pending(2), pending(2), pending(3)),
			BatchStep{Batch: 2, Batches: 3, Done: 1, Wait: 7 * time.Second}, nil},
		{"--batch-wait: the previous batch's end not recorded yet: it ends now", with(func(b *jobs.Batch) { b.WaitMS = 10000 }),
			entries(okIn(1), okIn(1), pending(2), pending(2), pending(3)),
			BatchStep{Batch: 2, Batches: 3, Done: 1, Wait: 10 * time.Second}, nil},
		{"--batch-wait: an older batch's end does not count", with(func(b *jobs.Batch) { b.WaitMS, b.Done, b.DoneAt = 10000, 1, ago(time.Hour) }),
			entries(okIn(1), okIn(1), okIn(2), okIn(2), pending(3)),
			BatchStep{Batch: 3, Batches: 3, Done: 2, Wait: 10 * time.Second}, nil},
		{"--batch-wait passed", with(func(b *jobs.Batch) { b.WaitMS, b.Done, b.DoneAt = 10000, 1, ago(11*time.Second) }),
			entries(okIn(1), okIn(1), pending(2), pending(2), pending(3)),
			BatchStep{Batch: 2, Batches: 3, Start: []string{"c", "d"}, Done: 1}, nil},
		{"no wait before batch 1", with(func(b *jobs.Batch) { b.WaitMS = 10000 }),
			entries(pending(1), pending(1), pending(2), pending(2), pending(3)),
			BatchStep{Batch: 1, Batches: 3, Start: []string{"a", "b"}}, nil},
		{"--max-fail is checked before the wait", with(func(b *jobs.Batch) { b.WaitMS, b.MaxFail = 10000, 0 }),
			entries(failIn(1), okIn(1), pending(2), pending(2), pending(3)),
			BatchStep{Batch: 2, Batches: 3, Done: 1, Over: true}, []string{"c", "d", "e"}},
		{"entries ended without starting (a cancel) end their batch", plan,
			entries(okIn(1), okIn(1), failIn(2), failIn(2), pending(3)),
			BatchStep{Batch: 3, Batches: 3, Start: []string{"e"}, Done: 2}, nil},
		{"every entry finished", plan,
			entries(okIn(1), okIn(1), okIn(2), failIn(2), okIn(3)),
			BatchStep{Batches: 3, Done: 3, Over: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PlanBatch(tt.plan, tt.entries, now)
			var skipped []string
			for _, n := range []string{"a", "b", "c", "d", "e"} {
				r, ok := got.Skip[n]
				if !ok {
					continue
				}
				skipped = append(skipped, n)
				if !r.Skipped() || r.Batch != tt.entries[n].Batch || r.State != status.Finished || r.OK {
					t.Errorf("skip %s: %+v, want FINISHED skipped in batch %d", n, r, tt.entries[n].Batch)
				}
			}
			if !reflect.DeepEqual(skipped, tt.skip) {
				t.Errorf("skipped %v, want %v", skipped, tt.skip)
			}
			got.Skip = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("step %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPlanBatchSkipMessage(t *testing.T) {
	now := time.Now()
	e := map[string]status.Result{"a": failIn(1), "b": failIn(1), "c": pending(2), "d": pending(2), "e": pending(3)}
	for _, tt := range []struct {
		plan jobs.Batch
		want string
	}{
		{jobs.Batch{Size: 2, Count: 3, MaxFail: 1, MaxFailSpec: "1"}, "not started: 2 minions failed, more than --max-fail 1"},
		{jobs.Batch{Size: 2, Count: 3, MaxFail: 0, MaxFailSpec: "10%"}, "not started: 2 minions failed, more than --max-fail 10% of 5 minions"},
		{jobs.Batch{Size: 2, Count: 3, MaxFail: 1}, "more than --max-fail 1"},
	} {
		got := PlanBatch(tt.plan, e, now)
		if r := got.Skip["e"]; r.Error == nil || !strings.Contains(r.Error.Message, tt.want) {
			t.Errorf("plan %+v: skipped e %+v, want a message with %q", tt.plan, r, tt.want)
		}
	}
}

// note records the batches found done, with the time, once.
func TestBatchStepNote(t *testing.T) {
	now := time.Now()
	plan := jobs.Batch{Size: 1, Count: 3, WaitMS: 1000, MaxFail: -1}
	e := map[string]status.Result{"a": okIn(1), "b": pending(2), "c": pending(3)}
	step := PlanBatch(plan, e, now)
	if !step.Note(&plan, now) || plan.Done != 1 || plan.DoneAt == nil || !plan.DoneAt.Equal(now) {
		t.Fatalf("after note: %+v", plan)
	}
	// Planned again later, the wait counts from the recorded end.
	later := now.Add(400 * time.Millisecond)
	step = PlanBatch(plan, e, later)
	if step.Note(&plan, later) || !plan.DoneAt.Equal(now) {
		t.Errorf("a second note moved the batch's end: %+v", plan)
	}
	if step.Wait != 600*time.Millisecond {
		t.Errorf("wait %s, want 600ms", step.Wait)
	}
}
