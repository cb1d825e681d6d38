package overlord

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/status"
)

func TestParseCount(t *testing.T) {
	good := map[string]Count{
		"1": {N: 1}, "25": {N: 25}, "0": {N: 0}, "25%": {N: 25, Percent: true},
		"100%": {N: 100, Percent: true}, "0%": {N: 0, Percent: true}, " 3 ": {N: 3},
	}
	for s, want := range good {
		got, err := ParseCount(s)
		if err != nil || got != want {
			t.Errorf("ParseCount(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "%", "abc", "-1", "-5%", "150%", "101%", "+2", "2.5", "1e3", "2%%", "x%"} {
		if got, err := ParseCount(s); err == nil {
			t.Errorf("ParseCount(%q) = %+v, want an error", s, got)
		}
	}
	if s := (Count{N: 25, Percent: true}).String(); s != "25%" {
		t.Errorf("String() = %q", s)
	}
}

func TestBatchSpecCheck(t *testing.T) {
	zero, ten := Count{}, Count{N: 10, Percent: true}
	tests := []struct {
		spec BatchSpec
		want string // substring of the error; "" for none
	}{
		{BatchSpec{}, ""},
		{BatchSpec{Size: Count{N: 2}}, ""},
		{BatchSpec{Size: Count{N: 2}, Wait: time.Second, MaxFail: &zero}, ""},
		{BatchSpec{Size: Count{N: 100, Percent: true}, MaxFail: &ten}, ""},
		{BatchSpec{Wait: time.Second}, "--batch-wait needs --batch"},
		{BatchSpec{MaxFail: &zero}, "--max-fail needs --batch"},
		{BatchSpec{Size: Count{N: 2}, Wait: -time.Second}, "must not be negative"},
		{BatchSpec{Size: Count{N: -1}}, "at least 1"},
		{BatchSpec{Size: Count{N: 0, Percent: true}}, "at least 1"},
		{BatchSpec{Size: Count{N: 150, Percent: true}}, "more than the whole target"},
		{BatchSpec{Size: Count{N: 2}, MaxFail: &Count{N: 101, Percent: true}}, "--max-fail"},
		{BatchSpec{Size: Count{N: 2}, MaxFail: &Count{N: -1}}, "--max-fail"},
	}
	for _, tt := range tests {
		err := tt.spec.Check()
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("Check(%+v) = %v, want %q", tt.spec, err, tt.want)
		}
	}
}

func TestBatchPlanSizes(t *testing.T) {
	count := func(s string) *Count {
		c, err := ParseCount(s)
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}
	tests := []struct {
		minions       int
		size, maxFail string // maxFail "": no limit
		wait          time.Duration
		want          jobs.Batch
	}{
		{5, "2", "", 0, jobs.Batch{Size: 2, Count: 3, MaxFail: -1}},
		{5, "5", "", 0, jobs.Batch{Size: 5, Count: 1, MaxFail: -1}},
		{5, "10", "", 0, jobs.Batch{Size: 10, Count: 1, MaxFail: -1}},
		{5, "1", "0", time.Second, jobs.Batch{Size: 1, Count: 5, WaitMS: 1000, MaxFail: 0, MaxFailSpec: "0"}},
		// Percentages of the batch are rounded up, and a batch holds one
		// minion at least.
		{5, "50%", "", 0, jobs.Batch{Size: 3, Count: 2, MaxFail: -1}},
		{5, "1%", "", 0, jobs.Batch{Size: 1, Count: 5, MaxFail: -1}},
		{5, "100%", "", 0, jobs.Batch{Size: 5, Count: 1, MaxFail: -1}},
		{200, "25%", "", 0, jobs.Batch{Size: 50, Count: 4, MaxFail: -1}},
		{7, "30%", "", 0, jobs.Batch{Size: 3, Count: 3, MaxFail: -1}},
		// --max-fail N%: more failed minions than N% of the target. 10%
		// of 5 is half a minion: the first failure is more than that.
		{5, "2", "10%", 0, jobs.Batch{Size: 2, Count: 3, MaxFail: 0, MaxFailSpec: "10%"}},
		{5, "2", "50%", 0, jobs.Batch{Size: 2, Count: 3, MaxFail: 2, MaxFailSpec: "50%"}},
		{10, "2", "20%", 0, jobs.Batch{Size: 2, Count: 5, MaxFail: 2, MaxFailSpec: "20%"}},
		{5, "2", "100%", 0, jobs.Batch{Size: 2, Count: 3, MaxFail: 5, MaxFailSpec: "100%"}},
	}
	for _, tt := range tests {
		p := &Prepared{Spec: CallSpec{Batch: BatchSpec{Size: *count(tt.size), Wait: tt.wait}}}
		if tt.maxFail != "" {
			p.Spec.Batch.MaxFail = count(tt.maxFail)
		}
		for i := range tt.minions {
			p.Minions = append(p.Minions, jobs.Minion{Name: fmt.Sprintf("m%d", i)})
		}
		got, err := p.batchPlan()
		if err != nil || got == nil || *got != tt.want {
			t.Errorf("%d minions, --batch %s --max-fail %q: plan %+v, %v; want %+v", tt.minions, tt.size, tt.maxFail, got, err, tt.want)
		}
	}
	if got, err := (&Prepared{Minions: []jobs.Minion{{Name: "a"}}}).batchPlan(); got != nil || err != nil {
		t.Errorf("not batched: plan %+v, %v; want nil", got, err)
	}
	if _, err := (&Prepared{Spec: CallSpec{Batch: BatchSpec{Wait: time.Second}}}).batchPlan(); err == nil {
		t.Error("--batch-wait without --batch: no error")
	}
}

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
		want    batchStep // Skip compared by names only
		skip    []string
	}{
		{"a new job starts batch 1", plan,
			entries(pending(1), pending(1), pending(2), pending(2), pending(3)),
			batchStep{Batch: 1, Batches: 3, Start: []string{"a", "b"}}, nil},
		{"batch 1 running", plan,
			entries(okIn(1), submitted(1), pending(2), pending(2), pending(3)),
			batchStep{Batch: 1, Batches: 3}, nil},
		{"a driver that died mid-submit starts the rest of its batch", plan,
			entries(submitted(1), pending(1), pending(2), pending(2), pending(3)),
			batchStep{Batch: 1, Batches: 3, Start: []string{"b"}}, nil},
		{"batch 1 over: batch 2 starts", plan,
			entries(okIn(1), okIn(1), pending(2), pending(2), pending(3)),
			batchStep{Batch: 2, Batches: 3, Start: []string{"c", "d"}, Done: 1}, nil},
		{"failures without --max-fail do not stop anything", plan,
			entries(failIn(1), failIn(1), okIn(2), failIn(2), pending(3)),
			batchStep{Batch: 3, Batches: 3, Start: []string{"e"}, Done: 2}, nil},
		{"--max-fail 0: the first failure skips the batches not started", with(func(b *jobs.Batch) { b.MaxFail, b.MaxFailSpec = 0, "0" }),
			entries(okIn(1), failIn(1), pending(2), pending(2), pending(3)),
			batchStep{Batch: 2, Batches: 3, Done: 1, Over: true}, []string{"c", "d", "e"}},
		{"--max-fail 1: one failure is not more than 1", with(func(b *jobs.Batch) { b.MaxFail = 1 }),
			entries(okIn(1), failIn(1), pending(2), pending(2), pending(3)),
			batchStep{Batch: 2, Batches: 3, Start: []string{"c", "d"}, Done: 1}, nil},
		{"--max-fail 1: two failures are", with(func(b *jobs.Batch) { b.MaxFail = 1 }),
			entries(okIn(1), failIn(1), okIn(2), failIn(2), pending(3)),
			batchStep{Batch: 3, Batches: 3, Done: 2, Over: true}, []string{"e"}},
		{"--max-fail crossed mid-batch: the batch running finishes", with(func(b *jobs.Batch) { b.MaxFail = 0 }),
			entries(failIn(1), submitted(1), pending(2), pending(2), pending(3)),
			batchStep{Batch: 1, Batches: 3}, nil},
		{"--batch-wait: the previous batch ended 3s ago", with(func(b *jobs.Batch) { b.WaitMS, b.Done, b.DoneAt = 10000, 1, ago(3*time.Second) }),
			entries(okIn(1), okIn(1), pending(2), pending(2), pending(3)),
			batchStep{Batch: 2, Batches: 3, Done: 1, Wait: 7 * time.Second}, nil},
		{"--batch-wait: the previous batch's end not recorded yet: it ends now", with(func(b *jobs.Batch) { b.WaitMS = 10000 }),
			entries(okIn(1), okIn(1), pending(2), pending(2), pending(3)),
			batchStep{Batch: 2, Batches: 3, Done: 1, Wait: 10 * time.Second}, nil},
		{"--batch-wait: an older batch's end does not count", with(func(b *jobs.Batch) { b.WaitMS, b.Done, b.DoneAt = 10000, 1, ago(time.Hour) }),
			entries(okIn(1), okIn(1), okIn(2), okIn(2), pending(3)),
			batchStep{Batch: 3, Batches: 3, Done: 2, Wait: 10 * time.Second}, nil},
		{"--batch-wait passed", with(func(b *jobs.Batch) { b.WaitMS, b.Done, b.DoneAt = 10000, 1, ago(11*time.Second) }),
			entries(okIn(1), okIn(1), pending(2), pending(2), pending(3)),
			batchStep{Batch: 2, Batches: 3, Start: []string{"c", "d"}, Done: 1}, nil},
		{"no wait before batch 1", with(func(b *jobs.Batch) { b.WaitMS = 10000 }),
			entries(pending(1), pending(1), pending(2), pending(2), pending(3)),
			batchStep{Batch: 1, Batches: 3, Start: []string{"a", "b"}}, nil},
		{"--max-fail is checked before the wait", with(func(b *jobs.Batch) { b.WaitMS, b.MaxFail = 10000, 0 }),
			entries(failIn(1), okIn(1), pending(2), pending(2), pending(3)),
			batchStep{Batch: 2, Batches: 3, Done: 1, Over: true}, []string{"c", "d", "e"}},
		{"entries ended without starting (a cancel) end their batch", plan,
			entries(okIn(1), okIn(1), failIn(2), failIn(2), pending(3)),
			batchStep{Batch: 3, Batches: 3, Start: []string{"e"}, Done: 2}, nil},
		{"every entry finished", plan,
			entries(okIn(1), okIn(1), okIn(2), failIn(2), okIn(3)),
			batchStep{Batches: 3, Done: 3, Over: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := planBatch(tt.plan, tt.entries, now)
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
		got := planBatch(tt.plan, e, now)
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
	step := planBatch(plan, e, now)
	if !step.note(&plan, now) || plan.Done != 1 || plan.DoneAt == nil || !plan.DoneAt.Equal(now) {
		t.Fatalf("after note: %+v", plan)
	}
	// Planned again later, the wait counts from the recorded end.
	later := now.Add(400 * time.Millisecond)
	step = planBatch(plan, e, later)
	if step.note(&plan, later) || !plan.DoneAt.Equal(now) {
		t.Errorf("a second note moved the batch's end: %+v", plan)
	}
	if step.Wait != 600*time.Millisecond {
		t.Errorf("wait %s, want 600ms", step.Wait)
	}
}
