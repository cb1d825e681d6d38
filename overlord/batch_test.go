package overlord

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/jobs"
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
