package minion

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/status"
)

// Job is an async job as minion.db records it.
type Job struct {
	ID          string          `json:"job_id"`
	OriginJobID string          `json:"origin_job_id"`
	Caller      string          `json:"caller"`
	Module      string          `json:"module"`
	Method      string          `json:"method"`
	Args        map[string]any  `json:"args,omitempty"`
	TimeoutMS   int64           `json:"timeout_ms,omitempty"`
	State       status.State    `json:"state"` // RUNNING or FINISHED; PARTIAL is derived from the output
	OK          bool            `json:"ok"`
	Result      json.RawMessage `json:"result,omitempty"`
	Error       *status.Error   `json:"error,omitempty"`
	PID         int             `json:"pid,omitempty"`
	// StartTicks and BootID identify the runner beyond its pid: its start
	// time (clock ticks after boot, /proc/PID/stat) and the boot it ran
	// in. A pid reused by another process, after a restart or a reboot,
	// does not match them, and its process group is never signalled.
	StartTicks uint64      `json:"start_ticks,omitempty"`
	BootID     string      `json:"boot_id,omitempty"`
	Cancelled  bool        `json:"cancel_requested,omitempty"`
	CancelKind status.Kind `json:"cancel_kind,omitempty"` // cancelled or timeout
	CreatedAt  time.Time   `json:"created_at"`
	FinishedAt *time.Time  `json:"finished_at,omitempty"`
	DurationMS int64       `json:"duration_ms,omitempty"`
}

const jobStoreSchema = 1

var (
	mbMeta    = []byte("meta")
	mbJobs    = []byte("jobs")
	mbOrigins = []byte("origins")
	// mbRunning indexes the jobs not FINISHED: job ID -> caller. putJob
	// keeps it in step with mbJobs; a store made before it existed gets
	// it built when opened.
	mbRunning = []byte("running")
	mkSchema  = []byte("schema_version")
)

// jobStore is minion.db. The daemon is the only process that opens it and
// keeps it open while it runs.
type jobStore struct {
	db *bolt.DB
}

func openJobStore(path string) (*jobStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%s is locked: is another minion daemon running with this state directory?", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{mbMeta, mbJobs, mbOrigins} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(mbMeta)
		v := meta.Get(mkSchema)
		if v == nil {
			if err := meta.Put(mkSchema, []byte(strconv.Itoa(jobStoreSchema))); err != nil {
				return err
			}
		} else if string(v) != strconv.Itoa(jobStoreSchema) {
			return fmt.Errorf("%s has schema version %s; this minion reads version %d", path, v, jobStoreSchema)
		}
		if tx.Bucket(mbRunning) == nil {
			return buildRunningIndex(tx)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &jobStore{db: db}, nil
}

func (s *jobStore) Close() error { return s.db.Close() }

// buildRunningIndex makes mbRunning from every job, once.
func buildRunningIndex(tx *bolt.Tx) error {
	rb, err := tx.CreateBucket(mbRunning)
	if err != nil {
		return err
	}
	return tx.Bucket(mbJobs).ForEach(func(k, v []byte) error {
		var j Job
		if err := json.Unmarshal(v, &j); err != nil {
			return fmt.Errorf("job %s: %w", k, err)
		}
		if j.State == status.Finished {
			return nil
		}
		return rb.Put(k, []byte(j.Caller))
	})
}

func originKey(caller, origin string) []byte { return []byte(caller + "\x00" + origin) }

// submit returns the job for (caller, origin), creating it with mk if it
// does not exist yet, in one transaction: the same pair always maps to
// the same job. A new job is refused (kind internal) if limits says so,
// given how many jobs run, in all and of caller.
func (s *jobStore) submit(caller, origin string, limits func(running, callers int) error, mk func(id string) Job) (job Job, created bool, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		ob := tx.Bucket(mbOrigins)
		if id := ob.Get(originKey(caller, origin)); id != nil {
			return getJob(tx, string(id), &job)
		}
		if limits != nil {
			running, callers := 0, 0
			err := tx.Bucket(mbRunning).ForEach(func(_, v []byte) error {
				running++
				if string(v) == caller {
					callers++
				}
				return nil
			})
			if err != nil {
				return err
			}
			if err := limits(running, callers); err != nil {
				return err
			}
		}
		id, err := jobs.NewID()
		if err != nil {
			return err
		}
		job, created = mk(id), true
		if err := ob.Put(originKey(caller, origin), []byte(id)); err != nil {
			return err
		}
		return putJob(tx, job)
	})
	return job, created, err
}

func getJob(tx *bolt.Tx, id string, job *Job) error {
	data := tx.Bucket(mbJobs).Get([]byte(id))
	if data == nil {
		return status.Errorf(status.KindLost, "no job %s on this minion", id)
	}
	return json.Unmarshal(data, job)
}

func putJob(tx *bolt.Tx, job Job) error {
	data, err := json.Marshal(job)
	if err != nil {
		return err
	}
	if err := tx.Bucket(mbJobs).Put([]byte(job.ID), data); err != nil {
		return err
	}
	if job.State == status.Finished {
		return tx.Bucket(mbRunning).Delete([]byte(job.ID))
	}
	return tx.Bucket(mbRunning).Put([]byte(job.ID), []byte(job.Caller))
}

func (s *jobStore) get(id string) (Job, error) {
	var job Job
	err := s.db.View(func(tx *bolt.Tx) error { return getJob(tx, id, &job) })
	return job, err
}

// update applies fn to a job and stores it, unless fn returns false.
func (s *jobStore) update(id string, fn func(*Job) bool) (Job, error) {
	var job Job
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := getJob(tx, id, &job); err != nil {
			return err
		}
		if !fn(&job) {
			return nil
		}
		return putJob(tx, job)
	})
	return job, err
}

// running returns the jobs not yet FINISHED, reading only those.
func (s *jobStore) running() ([]Job, error) {
	var out []Job
	err := s.db.View(func(tx *bolt.Tx) error {
		jb := tx.Bucket(mbJobs)
		return tx.Bucket(mbRunning).ForEach(func(k, _ []byte) error {
			v := jb.Get(k)
			if v == nil {
				return nil
			}
			var j Job
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("job %s: %w", k, err)
			}
			if j.State != status.Finished {
				out = append(out, j)
			}
			return nil
		})
	})
	return out, err
}

// list returns up to limit jobs of caller ("" for everyone's), newest
// first (limit 0: all). It reads no further than it needs to.
func (s *jobStore) list(limit int, caller string) ([]Job, error) {
	var out []Job
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(mbJobs).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var j Job
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("job %s: %w", k, err)
			}
			if caller != "" && !sameIdentity(j.Caller, caller) {
				continue
			}
			out = append(out, j)
			if limit > 0 && len(out) >= limit {
				break
			}
		}
		return nil
	})
	return out, err
}

// purge deletes FINISHED jobs created before cutoff, and beyond the keep
// newest FINISHED jobs, returning their IDs.
func (s *jobStore) purge(cutoff time.Time, keep int) ([]string, error) {
	var gone []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		jb, ob := tx.Bucket(mbJobs), tx.Bucket(mbOrigins)
		finished := 0
		c := jb.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var j Job
			if err := json.Unmarshal(v, &j); err != nil {
				return err
			}
			if j.State != status.Finished {
				continue
			}
			finished++
			if finished > keep || j.CreatedAt.Before(cutoff) {
				gone = append(gone, j.ID)
				if err := ob.Delete(originKey(j.Caller, j.OriginJobID)); err != nil {
					return err
				}
			}
		}
		for _, id := range gone {
			if err := jb.Delete([]byte(id)); err != nil {
				return err
			}
			if err := tx.Bucket(mbRunning).Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
	return gone, err
}
