package jobs_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/jobs/jobstest"
	"github.com/overlordhq/overlord/status"
)

var (
	okResult     = status.Result{State: status.Finished, OK: true, Result: json.RawMessage(`true`), DurationMS: 3}
	failedResult = status.Result{State: status.Finished, Error: &status.Error{Kind: status.KindModuleError, Message: "exit status 1"}}
	unreachable  = status.Result{State: status.Finished, Error: &status.Error{Kind: status.KindUnreachable, Message: "connection refused"}}
	partial      = status.Result{State: status.Partial, MinionJobID: "m-1"}
)

func newJob(t *testing.T, s *jobs.Store, minions ...string) *jobs.Record {
	t.Helper()
	rec := &jobs.Record{Target: "*", Module: "test", Method: "ping"}
	if err := s.CreateJob(rec, minions); err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestCreateJob(t *testing.T) {
	s := jobstest.New(t)
	before := time.Now().UTC()
	rec := &jobs.Record{Target: "web*", Module: "command", Method: "run",
		Args: map[string]any{"cmd": "uptime"}, Positional: []any{"x"}, TimeoutMS: 5000, Forks: 8}
	if err := s.CreateJob(rec, []string{"web1", "web2", "web3"}); err != nil {
		t.Fatal(err)
	}
	id, err := uuid.Parse(rec.ID)
	if err != nil || id.Version() != 7 {
		t.Errorf("ID %q is not a UUIDv7 (%v)", rec.ID, err)
	}
	if rec.State != status.Running {
		t.Errorf("State %q, want RUNNING", rec.State)
	}
	if rec.CreatedAt.Before(before.Add(-time.Second)) || rec.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt %v", rec.CreatedAt)
	}
	if want := (status.Summary{Total: 3, Pending: 3}); rec.Summary != want {
		t.Errorf("Summary %+v, want %+v", rec.Summary, want)
	}

	got, entries, err := s.Job(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != rec.ID || got.Target != "web*" || got.Args["cmd"] != "uptime" || got.TimeoutMS != 5000 || got.Forks != 8 || got.Summary != rec.Summary {
		t.Errorf("read back %+v", got)
	}
	if len(entries) != 3 {
		t.Fatalf("%d entries, want 3", len(entries))
	}
	for name, e := range entries {
		if e.State != status.Running || e.OK {
			t.Errorf("entry %s = %+v, want RUNNING, not ok", name, e)
		}
	}

	if err := s.CreateJob(&jobs.Record{ID: rec.ID}, []string{"x"}); err == nil {
		t.Error("CreateJob with an existing ID succeeded")
	}
	if _, entries, _ := s.Job(rec.ID); len(entries) != 3 {
		t.Error("a refused CreateJob changed the job")
	}
}

func TestCreateJobNoMinions(t *testing.T) {
	s := jobstest.New(t)
	rec := newJob(t, s)
	_, entries, err := s.Job(rec.ID)
	if err != nil || len(entries) != 0 || rec.Summary.Total != 0 {
		t.Errorf("Job = %v entries, %v; summary %+v", entries, err, rec.Summary)
	}
}

// Results for one minion arrive several times (RUNNING -> PARTIAL ->
// FINISHED, or a retry); the summary must count each minion once, by its
// latest result.
func TestWriteKeepsSummary(t *testing.T) {
	s := jobstest.New(t)
	rec := newJob(t, s, "a", "b", "c")
	steps := []struct {
		results map[string]status.Result
		want    status.Summary
	}{
		{map[string]status.Result{"a": partial}, status.Summary{Total: 3, Pending: 3}},
		{map[string]status.Result{"a": okResult}, status.Summary{Total: 3, OK: 1, Pending: 2}},
		{map[string]status.Result{"a": okResult}, status.Summary{Total: 3, OK: 1, Pending: 2}},
		{map[string]status.Result{"b": failedResult, "c": unreachable}, status.Summary{Total: 3, OK: 1, Failed: 2}},
		{map[string]status.Result{"a": failedResult}, status.Summary{Total: 3, Failed: 3}},
		{map[string]status.Result{"a": okResult, "b": okResult}, status.Summary{Total: 3, OK: 2, Failed: 1}},
		{map[string]status.Result{"c": partial}, status.Summary{Total: 3, OK: 2, Pending: 1}},
		{map[string]status.Result{}, status.Summary{Total: 3, OK: 2, Pending: 1}},
		{nil, status.Summary{Total: 3, OK: 2, Pending: 1}},
	}
	for i, st := range steps {
		got, err := s.Write(rec.ID, st.results, nil)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got.Summary != st.want {
			t.Fatalf("step %d: returned summary %+v, want %+v", i, got.Summary, st.want)
		}
		stored, entries, err := s.Job(rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if stored.Summary != st.want {
			t.Fatalf("step %d: stored summary %+v, want %+v", i, stored.Summary, st.want)
		}
		// The summary always agrees with the entries.
		var recount status.Summary
		for _, e := range entries {
			recount.Add(e)
		}
		if recount != stored.Summary {
			t.Fatalf("step %d: summary %+v, entries count %+v", i, stored.Summary, recount)
		}
	}
	_, entries, _ := s.Job(rec.ID)
	if !reflect.DeepEqual(entries["a"], okResult) || !reflect.DeepEqual(entries["b"], okResult) || !reflect.DeepEqual(entries["c"], partial) {
		t.Errorf("entries %+v", entries)
	}
}

func TestWriteMutate(t *testing.T) {
	s := jobstest.New(t)
	rec := newJob(t, s, "a")
	fin := time.Date(2026, 11, 21, 13, 0, 5, 0, time.UTC)
	got, err := s.Write(rec.ID, map[string]status.Result{"a": okResult}, func(r *jobs.Record) error {
		if r.Summary.OK != 1 {
			t.Errorf("mutate sees summary %+v, want the results already counted", r.Summary)
		}
		r.State, r.FinishedAt = status.Finished, &fin
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stored, _, _ := s.Job(rec.ID)
	if stored.State != status.Finished || stored.FinishedAt == nil || !stored.FinishedAt.Equal(fin) || got.State != status.Finished {
		t.Errorf("stored %+v", stored)
	}
	if !stored.UpdatedAt.After(rec.CreatedAt) && !stored.UpdatedAt.Equal(rec.CreatedAt) {
		t.Errorf("UpdatedAt %v before CreatedAt %v", stored.UpdatedAt, rec.CreatedAt)
	}
}

// A Write that fails changes nothing: not the other results of its batch,
// not the summary.
func TestWriteIsAtomic(t *testing.T) {
	s := jobstest.New(t)
	rec := newJob(t, s, "a", "b")
	tests := []struct {
		name    string
		id      string
		results map[string]status.Result
		mutate  func(*jobs.Record) error
		wantErr error
	}{
		{"unknown job", "nosuch", map[string]status.Result{"a": okResult}, nil, jobs.ErrNotFound},
		{"minion not in job", rec.ID, map[string]status.Result{"a": okResult, "zz": okResult}, nil, jobs.ErrNotFound},
		{"mutate fails", rec.ID, map[string]status.Result{"a": okResult, "b": okResult}, func(r *jobs.Record) error {
			r.State = status.Finished
			return errors.New("no")
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Write(tt.id, tt.results, tt.mutate)
			if err == nil {
				t.Fatal("Write succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			stored, entries, _ := s.Job(rec.ID)
			if stored.State != status.Running || stored.Summary != (status.Summary{Total: 2, Pending: 2}) {
				t.Errorf("job changed: %+v", stored)
			}
			for n, e := range entries {
				if e.State != status.Running {
					t.Errorf("entry %s changed: %+v", n, e)
				}
			}
		})
	}
}

// Write marks minions that answered as seen, and not those that could
// not be reached.
func TestWriteTouchesMinions(t *testing.T) {
	s := jobstest.New(t)
	addMinions(t, s, "ok", "failed", "unreachable", "tls", "timeout")
	rec := newJob(t, s, "ok", "failed", "unreachable", "tls", "timeout", "unregistered")
	results := map[string]status.Result{
		"ok": okResult, "failed": failedResult, "unreachable": unreachable,
		"tls":          {State: status.Finished, Error: &status.Error{Kind: status.KindTLS}},
		"timeout":      {State: status.Finished, Error: &status.Error{Kind: status.KindTimeout}},
		"unregistered": okResult,
	}
	if _, err := s.Write(rec.ID, results, nil); err != nil {
		t.Fatal(err)
	}
	ms, _ := s.Minions()
	seen := map[string]bool{}
	for _, m := range ms {
		seen[m.Name] = m.LastSeen != nil
	}
	want := map[string]bool{"ok": true, "failed": true, "unreachable": false, "tls": false, "timeout": false}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("seen %v, want %v", seen, want)
	}
}

// CreateJob promises one entry per minion; a name listed twice must not
// count twice in the summary.
func TestCreateJobDuplicateMinions(t *testing.T) {
	s := jobstest.New(t)
	rec := newJob(t, s, "a", "a", "b")
	if _, err := s.Write(rec.ID, map[string]status.Result{"a": okResult, "b": okResult}, nil); err != nil {
		t.Fatal(err)
	}
	stored, entries, _ := s.Job(rec.ID)
	if stored.Summary.Pending != 0 || stored.Summary.Total != len(entries) {
		t.Errorf("jobs.Store.CreateJob(rec, [a a b]) stored %d entries but summary %+v; "+
			"after every minion answered, the job still counts %d pending", len(entries), stored.Summary, stored.Summary.Pending)
	}
}

func TestRecordStatus(t *testing.T) {
	rec := jobs.Record{ID: "x", State: status.Partial, Target: "*", Module: "m", Method: "f",
		Args: map[string]any{"a": 1.0}, Summary: status.Summary{Total: 1}}
	job := rec.Status(nil)
	if job.Minions == nil {
		t.Error("Status(nil) has nil minions; JSON would print null")
	}
	if job.JobID != "x" || job.State != status.Partial || job.Args["a"] != 1.0 || job.Summary.Total != 1 {
		t.Errorf("Status = %+v", job)
	}
}

func TestListJobs(t *testing.T) {
	s := jobstest.New(t)
	if recs, err := s.ListJobs(jobs.ListOptions{}); err != nil || len(recs) != 0 {
		t.Fatalf("empty store: %v, %v", recs, err)
	}
	// Six jobs created in order; UUIDv7 IDs sort by creation.
	var ids []string
	for i := range 6 {
		rec := newJob(t, s, "a")
		ids = append(ids, rec.ID)
		if i%2 == 0 {
			if _, err := s.Write(rec.ID, map[string]status.Result{"a": okResult}, func(r *jobs.Record) error {
				r.State = status.Finished
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name string
		opts jobs.ListOptions
		want []string
	}{
		{"all newest first", jobs.ListOptions{}, []string{ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]}},
		{"limit", jobs.ListOptions{Limit: 2}, []string{ids[5], ids[4]}},
		{"limit over count", jobs.ListOptions{Limit: 100}, []string{ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]}},
		{"finished", jobs.ListOptions{State: status.Finished}, []string{ids[4], ids[2], ids[0]}},
		{"running", jobs.ListOptions{State: status.Running}, []string{ids[5], ids[3], ids[1]}},
		{"running limit", jobs.ListOptions{State: status.Running, Limit: 2}, []string{ids[5], ids[3]}},
		{"partial", jobs.ListOptions{State: status.Partial}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, err := s.ListJobs(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range recs {
				got = append(got, r.ID)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ListJobs(%+v) = %v, want %v", tt.opts, got, tt.want)
			}
		})
	}
}

func TestJobByPrefix(t *testing.T) {
	s := jobstest.New(t)
	for _, id := range []string{"0190aaaa-1", "0190aaab-2", "0190bbbb-3", "0190bbbb-4", "0191"} {
		if err := s.CreateJob(&jobs.Record{ID: id}, []string{"a"}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		prefix  string
		want    string
		wantErr error
		msg     string
	}{
		{prefix: "0190aaaa-1", want: "0190aaaa-1"},
		{prefix: "0190aaaa", want: "0190aaaa-1"},
		{prefix: "0190aaab", want: "0190aaab-2"},
		{prefix: "0190bbbb-4", want: "0190bbbb-4"},
		{prefix: "0191", want: "0191"}, // an exact ID wins over longer IDs it prefixes
		{prefix: "0190aaa", msg: "ambiguous"},
		{prefix: "0190bbbb", msg: "ambiguous"},
		{prefix: "0190", msg: "ambiguous"},
		{prefix: "0190c", wantErr: jobs.ErrNotFound},
		{prefix: "0192", wantErr: jobs.ErrNotFound},
		{prefix: "1", wantErr: jobs.ErrNotFound},
		{prefix: "", wantErr: jobs.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			rec, _, err := s.Job(tt.prefix)
			switch {
			case tt.want != "":
				if err != nil || rec.ID != tt.want {
					t.Errorf("Job(%q) = %q, %v; want %q", tt.prefix, rec.ID, err, tt.want)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("Job(%q) error %v, want %v", tt.prefix, err, tt.wantErr)
				}
			default:
				if err == nil || !strings.Contains(err.Error(), tt.msg) {
					t.Errorf("Job(%q) error %v, want one saying %q", tt.prefix, err, tt.msg)
				}
			}
		})
	}
}

// One result written costs the same whatever the size of the job; here
// only that a large job stays correct.
func TestLargeJob(t *testing.T) {
	s := jobstest.New(t)
	names := make([]string, 3000)
	for i := range names {
		names[i] = fmt.Sprintf("m%05d", i)
	}
	rec := newJob(t, s, names...)
	batch := map[string]status.Result{}
	for i, n := range names {
		r := okResult
		if i%3 == 0 {
			r = unreachable
		}
		batch[n] = r
		if len(batch) == 1024 || i == len(names)-1 {
			if _, err := s.Write(rec.ID, batch, nil); err != nil {
				t.Fatal(err)
			}
			batch = map[string]status.Result{}
		}
	}
	stored, entries, err := s.Job(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := (status.Summary{Total: 3000, OK: 2000, Failed: 1000}); stored.Summary != want || len(entries) != 3000 {
		t.Errorf("summary %+v with %d entries, want %+v", stored.Summary, len(entries), want)
	}
}

func BenchmarkWriteOneResult(b *testing.B) {
	for _, n := range []int{3, 30000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s := jobstest.New(b)
			names := make([]string, n)
			for i := range names {
				names[i] = fmt.Sprintf("m%05d", i)
			}
			rec := &jobs.Record{}
			if err := s.CreateJob(rec, names); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				if _, err := s.Write(rec.ID, map[string]status.Result{names[i%n]: okResult}, nil); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func TestCreateJobBatched(t *testing.T) {
	s := jobstest.New(t)
	// Batches follow the order the minions are given (the target's), not
	// the store's sorted order.
	order := []string{"web3", "web1", "web5", "web2", "web4"}
	rec := &jobs.Record{Module: "test", Method: "ping", Batch: &jobs.Batch{Size: 2, Count: 3, MaxFail: -1}}
	if err := s.CreateJob(rec, order); err != nil {
		t.Fatal(err)
	}
	got, entries, err := s.Job(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Batch == nil || *got.Batch != *rec.Batch {
		t.Errorf("batch plan read back %+v, want %+v", got.Batch, rec.Batch)
	}
	want := map[string]int{"web3": 1, "web1": 1, "web5": 2, "web2": 2, "web4": 3}
	for n, b := range want {
		if e := entries[n]; e.Batch != b || e.State != status.Running {
			t.Errorf("entry %s = %+v, want RUNNING in batch %d", n, e, b)
		}
	}
	// A result written without its batch number keeps the entry's.
	if _, err := s.Write(rec.ID, map[string]status.Result{"web5": okResult}, nil); err != nil {
		t.Fatal(err)
	}
	_, entries, _ = s.Job(rec.ID)
	if e := entries["web5"]; e.Batch != 2 || !e.OK {
		t.Errorf("web5 after a write: %+v, want ok in batch 2", e)
	}

	// Not batched: no batch numbers.
	plain := newJob(t, s, "a", "b")
	_, entries, _ = s.Job(plain.ID)
	for n, e := range entries {
		if e.Batch != 0 {
			t.Errorf("entry %s of a job that is not batched has batch %d", n, e.Batch)
		}
	}
}

func TestBatchNumbers(t *testing.T) {
	tests := []struct {
		names []string
		size  int
		want  map[string]int
	}{
		{[]string{"a", "b", "c"}, 1, map[string]int{"a": 1, "b": 2, "c": 3}},
		{[]string{"a", "b", "c"}, 2, map[string]int{"a": 1, "b": 1, "c": 2}},
		{[]string{"a", "b", "c"}, 5, map[string]int{"a": 1, "b": 1, "c": 1}},
		{[]string{"a", "a", "b"}, 1, map[string]int{"a": 1, "b": 2}},
		{[]string{"a", "b"}, 0, map[string]int{"a": 1, "b": 2}},
		{nil, 3, map[string]int{}},
	}
	for _, tt := range tests {
		if got := jobs.BatchNumbers(tt.names, tt.size); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("BatchNumbers(%v, %d) = %v, want %v", tt.names, tt.size, got, tt.want)
		}
	}
}
