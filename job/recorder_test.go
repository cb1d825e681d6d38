package job_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/overlordhq/overlord/job"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/jobs/jobstest"
	"github.com/overlordhq/overlord/status"
)

// TestRecorderCachesFacts: recording a facts.all job's results caches the
// facts of the minions that answered with facts, and nothing else; other
// jobs' results cache nothing.
func TestRecorderCachesFacts(t *testing.T) {
	s := jobstest.New(t)
	for _, n := range []string{"web1", "web2", "web3", "web4"} {
		if err := s.AddMinion(jobs.Minion{Name: n, Addr: n + ":1", AddedAt: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
	}
	ok := func(result string) status.Result {
		return status.Result{State: status.Finished, OK: true, Result: json.RawMessage(result)}
	}
	record := func(module, method string, results map[string]status.Result) {
		t.Helper()
		rec := jobs.Record{Target: "*", Module: module, Method: method}
		names := make([]string, 0, len(results))
		for n := range results {
			names = append(names, n)
		}
		if err := s.CreateJob(&rec, names); err != nil {
			t.Fatal(err)
		}
		rc := job.NewRecorder(s, rec)
		for n, r := range results {
			rc.Add(n, r)
		}
		if err := rc.Finish(); err != nil {
			t.Fatal(err)
		}
	}
	facts := func() map[string]map[string]any {
		t.Helper()
		ms, err := s.Minions()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]map[string]any{}
		for _, m := range ms {
			if m.Facts != nil {
				out[m.Name] = m.Facts
			}
		}
		return out
	}

	record("test", "echo", map[string]status.Result{"web1": ok(`{"os":"linux"}`)})
	if got := facts(); len(got) != 0 {
		t.Errorf("test.echo's result cached as facts: %v", got)
	}
	record("facts", "all", map[string]status.Result{
		"web1":    ok(`{"os":"debian","cpus":2}`),
		"web2":    {State: status.Finished, Error: status.Errorf(status.KindUnreachable, "down"), Result: json.RawMessage(`{"os":"stale"}`)},
		"web3":    ok(`["not", "facts"]`),
		"web4":    ok(`null`),
		"removed": ok(`{"os":"gone"}`),
	})
	want := map[string]map[string]any{"web1": {"os": "debian", "cpus": float64(2)}}
	if got := facts(); !reflect.DeepEqual(got, want) {
		t.Errorf("cached facts %v, want %v", got, want)
	}
	// A later facts.all call refreshes them.
	record("facts", "all", map[string]status.Result{"web1": ok(`{"os":"rhel"}`)})
	if got := facts()["web1"]; !reflect.DeepEqual(got, map[string]any{"os": "rhel"}) {
		t.Errorf("web1's facts after a second call: %v, want os rhel", got)
	}
}
