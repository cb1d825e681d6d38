package jobs_test

import (
	"testing"
	"time"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/jobs/jobstest"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/status"
)

// Census counts jobs by state, the queued entries of open jobs, and the
// registered minions.
func TestCensus(t *testing.T) {
	s := jobstest.New(t)
	c, err := s.Census()
	if err != nil || c.Jobs[status.Running] != 0 || c.Jobs[status.Finished] != 0 || c.Queued != 0 || len(c.Minions) != 0 {
		t.Fatalf("empty store: %+v %v", c, err)
	}
	for _, n := range []string{"web2", "web1"} {
		if err := s.AddMinion(jobs.Minion{Name: n, Addr: "127.0.0.1:1", Fingerprint: "f"}); err != nil {
			t.Fatal(err)
		}
	}
	since := time.Now().UTC()
	queued := status.Result{State: status.Running, QueuedSince: &since, LastError: status.Errorf(status.KindUnreachable, "refused")}
	finish := func(r *jobs.Record) error { r.State = status.Finished; return nil }
	partial := func(r *jobs.Record) error { r.State = status.Partial; return nil }

	newJob(t, s, "web1", "web2") // RUNNING
	q := newJob(t, s, "web1", "web2", "web3")
	if _, err := s.Write(q.ID, map[string]status.Result{"web1": queued, "web2": queued, "web3": okResult}, partial); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		done := newJob(t, s, "web1")
		// A queued entry of a FINISHED job is not waiting any more.
		if _, err := s.Write(done.ID, map[string]status.Result{"web1": queued}, finish); err != nil {
			t.Fatal(err)
		}
	}
	c, err = s.Census()
	if err != nil {
		t.Fatal(err)
	}
	want := map[status.State]int{status.Running: 1, status.Partial: 1, status.Finished: 3}
	for st, n := range want {
		if c.Jobs[st] != n {
			t.Errorf("%s: %d jobs, want %d", st, c.Jobs[st], n)
		}
	}
	if len(c.Jobs) != 3 || c.Queued != 2 {
		t.Errorf("census %+v: want 3 states and 2 queued entries", c)
	}
	if len(c.Minions) != 2 || c.Minions[0] != "web1" || c.Minions[1] != "web2" {
		t.Errorf("minions %v, want [web1 web2]", c.Minions)
	}
}

// DescribesMethod finds a method in any minion's cached description.
func TestDescribesMethod(t *testing.T) {
	s := jobstest.New(t)
	if ok, err := s.DescribesMethod("hello", "world"); ok || err != nil {
		t.Fatalf("no cache: %v %v", ok, err)
	}
	err := s.CacheModules(map[string]jobs.Described{"web1": {Fingerprint: "f", Modules: []modules.ModuleInfo{
		{Name: "hello", Methods: []modules.MethodInfo{{Name: "world"}, {Name: "there"}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		module, method string
		want           bool
	}{{"hello", "world", true}, {"hello", "there", true}, {"hello", "nobody", false}, {"world", "hello", false}} {
		if ok, err := s.DescribesMethod(tc.module, tc.method); ok != tc.want || err != nil {
			t.Errorf("%s.%s: %v %v, want %v", tc.module, tc.method, ok, err, tc.want)
		}
	}
}
