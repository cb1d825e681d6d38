package miniontest_test

import (
	"context"
	"testing"

	"github.com/overlordhq/overlord/minion/miniontest"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

func TestFleetPing(t *testing.T) {
	f := miniontest.Start(t, miniontest.Config{Minions: 3})
	if got, want := len(f.Names), 3; got != want {
		t.Fatalf("fleet has %d minions, want %d", got, want)
	}
	// One minion down: its result is data, the others still answer.
	down := f.Names[1]
	if err := f.Minions[1].Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	p, err := f.Overlord.Prepare(overlord.CallSpec{Target: "m*", Module: "test", Method: "ping"})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]status.Result{}
	job, err := f.Overlord.Call(context.Background(), p, func(name string, r status.Result) { seen[name] = r })
	if err != nil {
		t.Fatal(err)
	}
	if job.State != status.Finished || job.Summary.Total != 3 || job.Summary.OK != 2 || job.Summary.Failed != 1 {
		t.Errorf("job: state %s, summary %+v; want FINISHED, 3 total, 2 ok, 1 failed", job.State, job.Summary)
	}
	for _, name := range f.Names {
		r := seen[name]
		switch {
		case name == down:
			if r.OK || r.Error == nil || r.Error.Kind != status.KindUnreachable {
				t.Errorf("%s (closed): %+v, want unreachable", name, r)
			}
		case !r.OK || string(r.Result) != "true":
			t.Errorf("%s: %+v, want ok and true", name, r)
		}
	}

	// The job is on record.
	rec, entries, err := f.Overlord.Store.Job(job.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != status.Finished || len(entries) != 3 {
		t.Errorf("stored job: state %s, %d entries; want FINISHED, 3", rec.State, len(entries))
	}

	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestNewRefusesEmptyFleet(t *testing.T) {
	if _, err := miniontest.New(t.TempDir(), miniontest.Config{}); err == nil {
		t.Fatal("New with no minions: no error")
	}
}
