package jobs_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/jobs/jobstest"
	"github.com/overlordhq/overlord/status"
)

// newBenchStore returns an initialised store in a temporary directory
// with minions registered, as overlord.db is after `overlord minion add`.
func newBenchStore(b *testing.B, minions []string) *jobs.Store {
	b.Helper()
	s := jobs.New(filepath.Join(b.TempDir(), "overlord.db"), 0)
	if err := s.Init(); err != nil {
		b.Fatal(err)
	}
	for _, name := range minions {
		if err := s.AddMinion(jobs.Minion{Name: name, Addr: "127.0.0.1:51234", AddedAt: time.Now().UTC()}); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

func benchMinionNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("m%04d", i)
	}
	return names
}

// pingResults is what a call of test.ping to every minion writes.
func pingResults(names []string) map[string]status.Result {
	res := make(map[string]status.Result, len(names))
	for _, n := range names {
		res[n] = status.Result{State: status.Finished, OK: true, Result: json.RawMessage("true"), DurationMS: 1}
	}
	return res
}

func finish(r *jobs.Record) error {
	now := time.Now().UTC()
	r.State, r.FinishedAt = status.Finished, &now
	return nil
}

func pingRecord() *jobs.Record {
	return &jobs.Record{Target: "*", Module: "test", Method: "ping", TimeoutMS: 30000, Forks: 64}
}

// BenchmarkRecordJob measures recording a job of 1,000 minions as a
// synchronous call does: CreateJob with every entry RUNNING, then one
// Write of every result that also finishes the job and marks each
// (registered) minion as seen. The store grows by one job per op. Each
// is one bbolt write transaction on a freshly opened file, so one commit
// with its fsyncs.
func BenchmarkRecordJob(b *testing.B) {
	const n = 1000
	names := benchMinionNames(n)
	results := pingResults(names)
	s := newBenchStore(b, names)

	b.Run("create", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := s.CreateJob(pingRecord(), names); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("write", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			rec := pingRecord()
			if err := s.CreateJob(rec, names); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := s.Write(rec.ID, results, finish); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("create+write", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rec := pingRecord()
			if err := s.CreateJob(rec, names); err != nil {
				b.Fatal(err)
			}
			if _, err := s.Write(rec.ID, results, finish); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed())/float64(time.Microsecond)/float64(b.N)/n, "us/minion")
	})
}

// BenchmarkListJobs measures `overlord job list` (newest 50 jobs) over a
// store of 10,000 finished jobs of 10 minions each, built once before
// the timer starts, plus a few RUNNING jobs among the oldest.
//
//   - limit=50: the usual listing, a reverse cursor walk that stops
//     after 50 headers.
//   - state=RUNNING,limit=50: a state filter that few jobs match, so
//     the walk reads every header.
func BenchmarkListJobs(b *testing.B) {
	const (
		jobCount     = 10000
		running      = 10
		minionsOfJob = 10
	)
	names := benchMinionNames(minionsOfJob)
	results := pingResults(names)
	s := newBenchStore(b, names)
	for i := range jobCount {
		rec := pingRecord()
		if err := s.CreateJob(rec, names); err != nil {
			b.Fatal(err)
		}
		if i < running {
			continue
		}
		if _, err := s.Write(rec.ID, results, finish); err != nil {
			b.Fatal(err)
		}
	}

	for _, bc := range []struct {
		name string
		opts jobs.ListOptions
		want int
	}{
		{"limit=50", jobs.ListOptions{Limit: 50}, 50},
		{"state=RUNNING,limit=50", jobs.ListOptions{State: status.Running, Limit: 50}, running},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				recs, err := s.ListJobs(bc.opts)
				if err != nil {
					b.Fatal(err)
				}
				if len(recs) != bc.want {
					b.Fatalf("listed %d jobs, want %d", len(recs), bc.want)
				}
			}
		})
	}
}

// BenchmarkConcurrentWrites writes results into 32 jobs from 32
// goroutines of one process at once, as the overlord service's drivers
// do: the writes waiting for the store's lock are committed in groups
// (Store.update), one transaction and one sync per group.
func BenchmarkConcurrentWrites(b *testing.B) {
	s := jobstest.New(b)
	const writers = 32
	ids := make([]string, writers)
	for i := range ids {
		rec := &jobs.Record{ID: fmt.Sprintf("01a00000-0000-7000-8000-%012d", i), Target: "*", Module: "test", Method: "ping"}
		if err := s.CreateJob(rec, []string{"web1"}); err != nil {
			b.Fatal(err)
		}
		ids[i] = rec.ID
	}
	b.SetParallelism(writers / max(1, runtime.GOMAXPROCS(0)))
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		id := ids[int(next.Add(1)-1)%writers]
		r := map[string]status.Result{"web1": {State: status.Finished, OK: true}}
		for pb.Next() {
			if _, err := s.Write(id, r, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
