package jobs

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/overlordhq/overlord/status"
)

// fillJobs writes n finished 3-minion jobs into the store in a few large
// transactions, in the layout CreateJob and Write produce.
func fillJobs(tb testing.TB, s *Store, n int) {
	tb.Helper()
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	entry, _ := json.Marshal(status.Result{State: status.Finished, OK: true, Result: json.RawMessage("true"), DurationMS: 3})
	start := time.Now().Add(-time.Duration(n) * time.Second)
	for done := 0; done < n; {
		err := db.Update(func(tx *bolt.Tx) error {
			jb := tx.Bucket(bucketJobs)
			jb.FillPercent = 0.9
			for i := 0; i < 10000 && done < n; i, done = i+1, done+1 {
				id, err := NewID()
				if err != nil {
					return err
				}
				now := start.Add(time.Duration(done) * time.Second).UTC()
				rec := Record{ID: id, State: status.Finished, Target: "web*", Module: "test", Method: "ping",
					CreatedAt: now, UpdatedAt: now, FinishedAt: &now, Summary: status.Summary{Total: 3, OK: 3}}
				b, err := jb.CreateBucket([]byte(id))
				if err != nil {
					return err
				}
				if err := putJSON(b, keyJob, rec); err != nil {
					return err
				}
				eb, err := b.CreateBucket(bucketMinions)
				if err != nil {
					return err
				}
				for _, m := range []string{"web1", "web2", "web3"} {
					if err := eb.Put([]byte(m), entry); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkListJobs times `overlord job list` (the newest 50, and a
// --state filter that matches nothing, which walks every job) over a
// store of 100,000 jobs.
func BenchmarkListJobs(b *testing.B) {
	s := New(filepath.Join(b.TempDir(), "overlord.db"), 0)
	if err := s.Init(); err != nil {
		b.Fatal(err)
	}
	fillJobs(b, s, 100000)
	for _, tc := range []struct {
		name string
		opts ListOptions
	}{
		{"newest50", ListOptions{Limit: 50}},
		{"state=RUNNING(scan-all)", ListOptions{State: status.Running, Limit: 50}},
	} {
		b.Run(fmt.Sprintf("jobs=100000/%s", tc.name), func(b *testing.B) {
			for b.Loop() {
				if _, err := s.ListJobs(tc.opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
