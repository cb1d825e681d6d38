package jobs

import (
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/overlordhq/overlord/status"
)

// The index of open jobs follows each job's state, and a store made
// before the index existed gets it built on its next write.
func TestOpenJobsIndex(t *testing.T) {
	s := New(filepath.Join(t.TempDir(), "overlord.db"), 0)
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, name := range []string{"a", "b", "c"} {
		rec := &Record{Target: name, Module: "test", Method: "ping"}
		if err := s.CreateJob(rec, []string{"web1"}); err != nil {
			t.Fatal(err)
		}
		ids[name] = rec.ID
	}
	finish := func(r *Record) error { now := time.Now(); r.State, r.FinishedAt = status.Finished, &now; return nil }
	if _, err := s.Write(ids["b"], map[string]status.Result{"web1": {State: status.Finished, OK: true}}, finish); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ids["c"], func(r *Record) error { r.State = status.Partial; return nil }); err != nil {
		t.Fatal(err)
	}
	targets := func(st status.State) []string {
		recs, err := s.ListJobs(ListOptions{State: st})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range recs {
			out = append(out, r.Target)
		}
		return out
	}
	check := func(when string) {
		t.Helper()
		if got := targets(status.Running); len(got) != 1 || got[0] != "a" {
			t.Errorf("%s: RUNNING jobs %v, want [a]", when, got)
		}
		if got := targets(status.Partial); len(got) != 1 || got[0] != "c" {
			t.Errorf("%s: PARTIAL jobs %v, want [c]", when, got)
		}
		if got := targets(status.Finished); len(got) != 1 || got[0] != "b" {
			t.Errorf("%s: FINISHED jobs %v, want [b]", when, got)
		}
	}
	check("indexed")

	// An older store: no index. Reads scan; the next write builds it.
	db, err := bolt.Open(s.Path(), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketOpen) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	check("without the index")
	if err := s.AddMinion(Minion{Name: "web9", Addr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	check("after the index was rebuilt")
}
