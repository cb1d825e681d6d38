package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/overlordhq/overlord/internal/jobid"
	"slices"
	"strings"
	"time"

	"github.com/overlordhq/overlord/jobs/internal/kv"

	"github.com/overlordhq/overlord/status"
)

// Record is a job's header: its spec, lifecycle state and running summary.
type Record struct {
	ID         string         `json:"id"`
	State      status.State   `json:"state"`
	Target     string         `json:"target"`
	Module     string         `json:"module"`
	Method     string         `json:"method"`
	Args       map[string]any `json:"args,omitempty"`
	Positional []any          `json:"positional,omitempty"`
	Async      bool           `json:"async,omitempty"`
	TimeoutMS  int64          `json:"timeout_ms,omitempty"`
	Forks      int            `json:"forks,omitempty"`
	// Deadline bounds an async job, or a synchronous call carried on
	// past its wait: past it, open minion jobs are cancelled and their
	// entries finish with kind timeout.
	Deadline *time.Time `json:"deadline,omitempty"`
	// CancelRequested is set by `overlord job cancel`; the driver acts
	// on it.
	CancelRequested bool `json:"cancel_requested,omitempty"`
	// Queue is set on an async job submitted with --queue: a minion out
	// of reach keeps its entry open (status.Result.QueuedSince) and gets
	// the job when it comes back, until the deadline, instead of ending
	// unreachable; so does a minion lost from sight while its job runs.
	// Every driver that carries the job on reads it here.
	Queue bool `json:"queue,omitempty"`
	// Batch is a batched job's plan (--batch); nil for a job that runs
	// every minion at once.
	Batch *Batch `json:"batch,omitempty"`
	// Identity is the absolute path of the identity bundle an async job
	// was submitted with ("" for the state directory's own); its drivers
	// use it, since minions keep each caller's jobs apart. Caller is that
	// identity's name.
	Identity string `json:"identity,omitempty"`
	Caller   string `json:"caller,omitempty"`
	// SubmittedBy names who asked for the job when that is not the
	// identity that runs it: "api:NAME" for the HTTP API's client
	// certificate NAME, "ui" for the dashboard.
	SubmittedBy string `json:"submitted_by,omitempty"`
	// Unsent lists the minions a synchronous call never sent to before
	// it stopped waiting: its driver submits the job to them. Its other
	// open entries ran as calls, which the driver adopts (Minion.Adopt),
	// never submitting them again.
	Unsent     []string       `json:"unsent,omitempty"`
	CreatedAt  time.Time      `json:"created_at"`
	UpdatedAt  time.Time      `json:"updated_at"`
	FinishedAt *time.Time     `json:"finished_at,omitempty"`
	Summary    status.Summary `json:"summary"`
}

// Batch is the plan of a job run a batch of minions at a time (--batch),
// recorded with the job so that whoever carries the job on (a driver
// started after the last one died) knows where it stands. Each entry holds
// its batch number (status.Result.Batch).
type Batch struct {
	// Size is how many minions a batch holds (the last may hold fewer);
	// Count is how many batches there are.
	Size  int `json:"size"`
	Count int `json:"count"`
	// WaitMS is the pause between the end of a batch and the start of
	// the next (--batch-wait).
	WaitMS int64 `json:"wait_ms,omitempty"`
	// MaxFail: once more minions than this have failed, no new batch
	// starts; -1 for no limit. MaxFailSpec is --max-fail as typed (N or
	// N%), for messages.
	MaxFail     int    `json:"max_fail"`
	MaxFailSpec string `json:"max_fail_spec,omitempty"`
	// Done is how many batches have been seen FINISHED, DoneAt when the
	// last of them was: the next batch waits WaitMS from then.
	Done   int        `json:"done,omitempty"`
	DoneAt *time.Time `json:"done_at,omitempty"`
}

// BatchNumbers assigns each minion its batch, from 1, size minions a
// batch in the order given (a name given twice keeps its first place).
func BatchNumbers(minions []string, size int) map[string]int {
	size = max(size, 1)
	out := make(map[string]int, len(minions))
	i := 0
	for _, m := range minions {
		if _, dup := out[m]; dup {
			continue
		}
		out[m] = i/size + 1
		i++
	}
	return out
}

// NewID returns a new job ID: a UUIDv7, which sorts by creation time.
func NewID() (string, error) { return jobid.New() }

// Status returns the job in its printed shape, with the given entries.
func (r Record) Status(entries map[string]status.Result) status.Job {
	if entries == nil {
		entries = map[string]status.Result{}
	}
	return status.Job{
		JobID: r.ID, State: r.State, Target: r.Target, Module: r.Module, Method: r.Method,
		Args: r.Args, CreatedAt: r.CreatedAt, FinishedAt: r.FinishedAt,
		SubmittedBy: r.SubmittedBy, Minions: entries, Summary: r.Summary,
	}
}

// Line is a job in a list (`job list -o json`, GET /v1/jobs): its header
// without the entries.
type Line struct {
	JobID       string         `json:"job_id"`
	State       status.State   `json:"state"`
	Target      string         `json:"target"`
	Module      string         `json:"module"`
	Method      string         `json:"method"`
	CreatedAt   time.Time      `json:"created_at"`
	FinishedAt  *time.Time     `json:"finished_at,omitempty"`
	SubmittedBy string         `json:"submitted_by,omitempty"`
	Summary     status.Summary `json:"summary"`
}

// Line returns r as a job list shows it.
func (r Record) Line() Line {
	return Line{r.ID, r.State, r.Target, r.Module, r.Method, r.CreatedAt, r.FinishedAt, r.SubmittedBy, r.Summary}
}

// CreateJob stores a new job with one RUNNING entry per minion. rec.ID,
// State, CreatedAt and Summary are filled in if empty. In a batched job
// (rec.Batch set), each entry gets its batch number, rec.Batch.Size
// minions a batch in the order minions are given.
func (s *Store) CreateJob(rec *Record, minions []string) error {
	_, err := s.createJob(rec, minions, nil)
	return err
}

// AutoPurge is a rule for deleting old jobs as new ones are created
// (CreateJobPurging): FINISHED jobs created more than MaxAge before the
// new one, at most once per Every and at most Max jobs at a time, oldest
// first. The store keeps when it last applied one; what the rule is, is
// the caller's.
type AutoPurge struct {
	MaxAge time.Duration
	Every  time.Duration
	Max    int
}

// CreateJobPurging is CreateJob that also applies rule in the same
// transaction, and returns the IDs of the jobs it deleted.
func (s *Store) CreateJobPurging(rec *Record, minions []string, rule AutoPurge) ([]string, error) {
	return s.createJob(rec, minions, &rule)
}

func (s *Store) createJob(rec *Record, minions []string, rule *AutoPurge) (ids []string, err error) {
	if rec.ID == "" {
		id, err := NewID()
		if err != nil {
			return nil, err
		}
		rec.ID = id
	}
	if rec.State == "" {
		rec.State = status.Running
	}
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = time.Now().UTC()
	}
	rec.UpdatedAt = rec.CreatedAt
	rec.Summary = status.Summary{}
	var batchOf map[string]int
	if rec.Batch != nil {
		batchOf = BatchNumbers(minions, rec.Batch.Size)
	}
	minions = slices.Compact(slices.Sorted(slices.Values(minions)))
	pending := status.Result{State: status.Running}
	for range minions {
		rec.Summary.Add(pending)
	}
	pendingJSON := []byte(`{"state":"RUNNING","ok":false}`)
	var purged []string
	if s.etcd != nil && rule != nil {
		// On etcd a transaction holds a bounded number of keys: the
		// purge goes after the job, in transactions of its own.
		r := *rule
		defer func() {
			if err == nil {
				ids = s.purgeEtcd(rec.CreatedAt, r)
			}
		}()
		rule = nil
	}
	err = s.update(func(tx kv.Tx) error {
		jb, err := tx.Bucket(bucketJobs).CreateBucket([]byte(rec.ID))
		if err != nil {
			return fmt.Errorf("create job %s: %w", rec.ID, err)
		}
		if err := putJSON(jb, keyJob, rec); err != nil {
			return err
		}
		eb, err := jb.CreateBucket(bucketMinions)
		if err != nil {
			return err
		}
		// Keys inserted in order fill bbolt pages best.
		eb.SetFillPercent(0.9)
		for _, m := range minions {
			entry := pendingJSON
			if batchOf != nil {
				entry = fmt.Appendf(nil, `{"state":"RUNNING","ok":false,"batch":%d}`, batchOf[m])
			}
			if err := eb.Put([]byte(m), entry); err != nil {
				return err
			}
		}
		if err := markOpen(tx, rec.ID, rec.State); err != nil {
			return err
		}
		if rule == nil {
			return nil
		}
		purged, err = autoPurge(tx, rec.CreatedAt, *rule)
		return err
	})
	if err != nil {
		return nil, err
	}
	return purged, nil
}

// Write stores results (minion name -> entry) into job id, keeping the
// summary in step, then lets mutate change the header (for example to set
// the state), all in one transaction. Minions that answered are marked as
// seen. It returns the header as written.
func (s *Store) Write(id string, results map[string]status.Result, mutate func(*Record) error) (Record, error) {
	var rec Record
	err := s.update(func(tx kv.Tx) error {
		rec = Record{} // fn may run twice (see update)
		jb := tx.Bucket(bucketJobs).Bucket([]byte(id))
		if jb == nil {
			return fmt.Errorf("job %s: %w", id, ErrNotFound)
		}
		if err := getJSON(jb, keyJob, &rec); err != nil {
			return err
		}
		eb := jb.Bucket(bucketMinions)
		var seen []string
		for name, r := range results {
			var old status.Result
			key := []byte(name) // one copy for the read and the write
			if err := getJSON(eb, key, &old); err != nil {
				return fmt.Errorf("job %s has no minion %s: %w", id, name, err)
			}
			if r.Batch == 0 {
				r.Batch = old.Batch // an entry keeps its batch
			}
			rec.Summary.Remove(old)
			rec.Summary.Add(r)
			if err := putJSON(eb, key, r); err != nil {
				return err
			}
			if r.Answered() {
				seen = append(seen, name)
			}
		}
		rec.UpdatedAt = time.Now().UTC()
		if mutate != nil {
			if err := mutate(&rec); err != nil {
				return err
			}
		}
		if err := putJSON(jb, keyJob, rec); err != nil {
			return err
		}
		if err := markOpen(tx, rec.ID, rec.State); err != nil {
			return err
		}
		return touch(tx, seen, rec.UpdatedAt)
	})
	return rec, err
}

// Changes returns a channel that receives a value whenever job id (its
// full ID) changes in an etcd store, whichever process wrote it, and
// once as soon as the watch is on; changes not yet taken fold into one.
// It is closed when ctx ends. A bbolt store has no such news: Changes
// returns nil (a channel that never receives) and a reader polls.
func (s *Store) Changes(ctx context.Context, id string) <-chan struct{} {
	if s.etcd == nil {
		return nil
	}
	return s.etcd.Watch(ctx, bucketJobs, []byte(id))
}

// Job returns a job's header and entries. id may be a unique prefix of a
// job ID.
func (s *Store) Job(id string) (Record, map[string]status.Result, error) {
	var rec Record
	var entries map[string]status.Result
	err := s.view(func(tx kv.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		key, err := resolveID(jobs, id)
		if err != nil {
			return err
		}
		jb := jobs.Bucket(key)
		if err := getJSON(jb, keyJob, &rec); err != nil {
			return err
		}
		eb := jb.Bucket(bucketMinions)
		entries = make(map[string]status.Result)
		return eb.ForEach(func(k, _ []byte) error {
			var r status.Result
			if err := getJSON(eb, k, &r); err != nil {
				return err
			}
			entries[string(k)] = r
			return nil
		})
	})
	return rec, entries, err
}

// resolveID returns the key of the job whose ID is id or starts with it.
func resolveID(jobs kv.Bucket, id string) ([]byte, error) {
	if id == "" {
		return nil, fmt.Errorf("empty job ID: %w", ErrNotFound)
	}
	if jobs.Bucket([]byte(id)) != nil {
		return []byte(id), nil
	}
	c := jobs.Cursor()
	k, _ := c.Seek([]byte(id))
	if k == nil || !bytes.HasPrefix(k, []byte(id)) {
		return nil, fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	found := append([]byte(nil), k...)
	if next, _ := c.Next(); next != nil && bytes.HasPrefix(next, []byte(id)) {
		return nil, fmt.Errorf("%w %s: it matches %s and %s at least", ErrAmbiguous, id, found, next)
	}
	return found, nil
}

// ListOptions filter ListJobs.
type ListOptions struct {
	State status.State // only jobs in this state; "" for all
	Limit int          // at most this many; 0 for no limit
	// Before, if set, keeps only the jobs listed after the job of that
	// ID (older ones): the next page of a list that ended there.
	Before string
	// Target and Call, if set, keep only the jobs whose target contains
	// Target and whose MODULE.METHOD is Call (or whose module is Call,
	// without a dot).
	Target, Call string
	// FinishedSince, if not zero, keeps only the jobs FINISHED at that
	// time or later.
	FinishedSince time.Time
}

// markOpen keeps the index of jobs not FINISHED up to date.
func markOpen(tx kv.Tx, id string, state status.State) error {
	open := tx.Bucket(bucketOpen)
	if state == status.Finished {
		return open.Delete([]byte(id))
	}
	return open.Put([]byte(id), nil)
}

// ListJobs returns job headers, newest first. Listing the RUNNING or
// PARTIAL jobs walks the index of open jobs, not the whole store.
func (s *Store) ListJobs(opts ListOptions) ([]Record, error) {
	var out []Record
	err := s.view(func(tx kv.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		c := jobs.Cursor()
		if open := tx.Bucket(bucketOpen); open != nil && (opts.State == status.Running || opts.State == status.Partial) {
			c = open.Cursor()
		}
		k, _ := c.Last()
		if opts.Before != "" {
			if k, _ = c.Seek([]byte(opts.Before)); k == nil {
				k, _ = c.Last()
			}
			if k != nil && string(k) >= opts.Before {
				k, _ = c.Prev()
			}
		}
		for ; k != nil; k, _ = c.Prev() {
			jb := jobs.Bucket(k)
			if jb == nil {
				continue
			}
			if opts.State != "" || !opts.FinishedSince.IsZero() {
				// Decoding only the state is much cheaper than the whole
				// header, and most jobs are filtered out.
				var st struct {
					State      status.State `json:"state"`
					FinishedAt *time.Time   `json:"finished_at"`
				}
				if err := getJSON(jb, keyJob, &st); err != nil {
					return err
				}
				if opts.State != "" && st.State != opts.State {
					continue
				}
				if !opts.FinishedSince.IsZero() && (st.FinishedAt == nil || st.FinishedAt.Before(opts.FinishedSince)) {
					continue
				}
			}
			var rec Record
			if err := getJSON(jb, keyJob, &rec); err != nil {
				return err
			}
			if !opts.matches(rec) {
				continue
			}
			out = append(out, rec)
			if opts.Limit > 0 && len(out) >= opts.Limit {
				break
			}
		}
		return nil
	})
	return out, err
}

// matches reports whether rec passes o's Target and Call filters.
func (o ListOptions) matches(rec Record) bool {
	if o.Target != "" && !strings.Contains(rec.Target, o.Target) {
		return false
	}
	if mod, meth, dotted := strings.Cut(o.Call, "."); o.Call != "" {
		if rec.Module != mod || (dotted && rec.Method != meth) {
			return false
		}
	}
	return true
}

var keyLastPurge = []byte("last_purge")

// autoPurge applies rule as of now, unless it was applied less than
// rule.Every before.
func autoPurge(tx kv.Tx, now time.Time, rule AutoPurge) ([]string, error) {
	meta := tx.Bucket(bucketMeta)
	if last, err := time.Parse(time.RFC3339, string(meta.Get(keyLastPurge))); err == nil && now.Sub(last) < rule.Every {
		return nil, nil
	}
	if err := meta.Put(keyLastPurge, []byte(now.UTC().Format(time.RFC3339))); err != nil {
		return nil, err
	}
	return purgeOld(tx, now.Add(-rule.MaxAge), rule.Max)
}

// purgeOld deletes at most max FINISHED jobs created before cutoff,
// oldest first, and returns their IDs.
func purgeOld(tx kv.Tx, cutoff time.Time, max int) ([]string, error) {
	jobs := tx.Bucket(bucketJobs)
	var old [][]byte
	c := jobs.Cursor()
	for k, _ := c.First(); k != nil && len(old) < max; k, _ = c.Next() {
		rec, err := header(jobs, k)
		if err != nil {
			return nil, err
		}
		if !rec.CreatedAt.Before(cutoff) {
			break // IDs sort by creation time: the rest are newer
		}
		if rec.State == status.Finished {
			old = append(old, append([]byte(nil), k...))
		}
	}
	ids := make([]string, len(old))
	for i, k := range old {
		if err := jobs.DeleteBucket(k); err != nil {
			return nil, err
		}
		ids[i] = string(k)
	}
	return ids, nil
}

func header(jobs kv.Bucket, key []byte) (Record, error) {
	var rec Record
	jb := jobs.Bucket(key)
	if jb == nil {
		return rec, fmt.Errorf("job %s: %w", key, ErrNotFound)
	}
	return rec, getJSON(jb, keyJob, &rec)
}

// etcdPurgeChunk is how many jobs a transaction deletes on etcd: each is
// a few operations, and etcd allows 128 a transaction by default.
const etcdPurgeChunk = 30

// purgeEtcd applies rule as autoPurge does, in transactions of at most
// etcdPurgeChunk jobs. A failure stops it quietly: the jobs left are
// purged another time.
func (s *Store) purgeEtcd(now time.Time, rule AutoPurge) []string {
	var ids []string
	chunk := rule
	chunk.Max = min(rule.Max, etcdPurgeChunk)
	err := s.update(func(tx kv.Tx) error {
		var err error
		ids, err = autoPurge(tx, now, chunk)
		return err
	})
	for err == nil && len(ids) > 0 && len(ids)%etcdPurgeChunk == 0 && len(ids) < rule.Max {
		var more []string
		err = s.update(func(tx kv.Tx) error {
			var err error
			more, err = purgeOld(tx, now.Add(-rule.MaxAge), min(rule.Max-len(ids), etcdPurgeChunk))
			return err
		})
		if len(more) == 0 {
			break
		}
		ids = append(ids, more...)
	}
	return ids
}

// Purge deletes FINISHED jobs created before cutoff, except the keep
// newest jobs, and returns the IDs it deleted.
func (s *Store) Purge(cutoff time.Time, keep int) ([]string, error) {
	if s.etcd != nil {
		return s.purgeChunked(cutoff, keep)
	}
	var gone []string
	err := s.update(func(tx kv.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		var err error // fn may run twice (see update): gone is set anew
		if gone, err = purgeable(jobs, cutoff, keep); err != nil {
			return err
		}
		for _, id := range gone {
			if err := jobs.DeleteBucket([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
	return gone, err
}

// purgeable returns the FINISHED jobs created before cutoff, newest
// first, past the keep newest jobs.
func purgeable(jobs kv.Bucket, cutoff time.Time, keep int) ([]string, error) {
	var out []string
	c := jobs.Cursor()
	seen := 0
	for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
		seen++
		if seen <= keep {
			continue
		}
		rec, err := header(jobs, k)
		if err != nil {
			return nil, err
		}
		if rec.State == status.Finished && rec.CreatedAt.Before(cutoff) {
			out = append(out, string(k))
		}
	}
	return out, nil
}

// Update changes a job's header in one transaction.
func (s *Store) Update(id string, mutate func(*Record) error) (Record, error) {
	return s.Write(id, nil, mutate)
}

// Header returns a job's header without its entries. id may be a unique
// prefix.
func (s *Store) Header(id string) (Record, error) {
	var rec Record
	err := s.view(func(tx kv.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		key, err := resolveID(jobs, id)
		if err != nil {
			return err
		}
		rec, err = header(jobs, key)
		return err
	})
	return rec, err
}

// purgeChunked is Purge in transactions of at most etcdPurgeChunk jobs
// (etcd): the jobs are chosen in one read, and each is checked again
// when it is deleted.
func (s *Store) purgeChunked(cutoff time.Time, keep int) ([]string, error) {
	var candidates []string
	err := s.view(func(tx kv.Tx) error {
		var err error
		candidates, err = purgeable(tx.Bucket(bucketJobs), cutoff, keep)
		return err
	})
	if err != nil {
		return nil, err
	}
	var gone []string
	for len(candidates) > 0 {
		n := min(len(candidates), etcdPurgeChunk)
		var done []string
		err := s.update(func(tx kv.Tx) error {
			done = nil
			jobs := tx.Bucket(bucketJobs)
			for _, id := range candidates[:n] {
				rec, err := header(jobs, []byte(id))
				if errors.Is(err, ErrNotFound) {
					continue // deleted meanwhile
				}
				if err != nil {
					return err
				}
				if rec.State != status.Finished {
					continue
				}
				if err := jobs.DeleteBucket([]byte(id)); err != nil {
					return err
				}
				done = append(done, id)
			}
			return nil
		})
		if err != nil {
			return gone, err
		}
		gone = append(gone, done...)
		candidates = candidates[n:]
	}
	return gone, nil
}
