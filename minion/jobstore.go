package minion

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/overlordhq/overlord/internal/jobid"
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
	StartTicks uint64 `json:"start_ticks,omitempty"`
	BootID     string `json:"boot_id,omitempty"`
	// InProcess is set for a synchronous call that outlived its wait
	// (held.go): the daemon runs it and holds its runner lock; PID (with
	// StartTicks and BootID) is then the process group its method started
	// last (command.Exec), 0 if none, which a daemon started after a crash
	// kills when it settles the job lost.
	InProcess  bool        `json:"in_process,omitempty"`
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

// ErrJobStoreDamaged is returned by an operation on minion.db that found
// the file damaged (bbolt panicked or faulted reading it). The store is
// then moved aside and rebuilt from the spool, as on open.
var ErrJobStoreDamaged = errors.New("minion.db is damaged")

// errJobRecord is wrapped by the error of a job whose record in
// minion.db does not decode.
var errJobRecord = errors.New("its record in minion.db does not decode")

// jobStore is minion.db. The daemon is the only process that opens it and
// keeps it open while it runs.
//
// A damaged file never takes the daemon down: it is checked when opened
// (bbolt's consistency check and a read of every record), and one found
// damaged then, or later by an operation that panics or faults in bbolt,
// is moved aside (minion.db.damaged-<time>) and a new store is rebuilt
// from what the spool holds. A record that does not decode is skipped,
// and logged, by listings and retention.
type jobStore struct {
	path, spool string
	logger      *slog.Logger

	mu     sync.RWMutex // held to use db; written to replace it
	db     *bolt.DB     // nil if closed, or damaged and not rebuilt
	gen    int          // counts replacements of db
	closed bool
}

// openJobStore opens minion.db at path, checking it, and rebuilding it
// from spool (the spool's directory) if it is damaged, or empty while
// the spool holds jobs. Jobs of the spool it lacks are added to it.
func openJobStore(path, spool string, logger *slog.Logger) (*jobStore, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &jobStore{path: path, spool: spool, logger: logger}
	db, damage, err := s.openChecked()
	if err != nil {
		return nil, err
	}
	if damage != nil {
		if db, err = s.rebuild(damage); err != nil {
			return nil, err
		}
	}
	s.db = db
	return s, nil
}

// openChecked opens and checks minion.db. A file found damaged is
// closed and its damage returned (db nil); err is for what moving it
// aside would not mend (another daemon holds it, a newer schema, ...).
func (s *jobStore) openChecked() (db *bolt.DB, damage, err error) {
	fi, statErr := os.Stat(s.path)
	switch {
	case errors.Is(statErr, fs.ErrNotExist):
		// A new store; if the spool holds jobs, addSpooled records them.
	case statErr != nil:
		return nil, nil, statErr
	case fi.Size() == 0:
		if n := spooledJobs(s.spool); n > 0 {
			return nil, fmt.Errorf("%s is empty (0 bytes) while the spool holds %d jobs", s.path, n), nil
		}
	}
	err = guard(func() error {
		var err error
		db, err = bolt.Open(s.path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
		return err
	})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, nil, fmt.Errorf("%s is locked: is another minion daemon running with this state directory?", s.path)
	case errors.Is(err, fs.ErrPermission):
		return nil, nil, fmt.Errorf("open %s: %w", s.path, err)
	case err != nil:
		return nil, fmt.Errorf("open %s: %w", s.path, err), nil
	}
	if damage := guard(func() error { return checkDB(db) }); damage != nil {
		db.Close()
		return nil, fmt.Errorf("check %s: %w", s.path, damage), nil
	}
	err = guard(func() error {
		return db.Update(func(tx *bolt.Tx) error {
			if err := initStore(tx, s.path, s.logger); err != nil {
				return err
			}
			return s.addSpooled(tx, false)
		})
	})
	if err != nil {
		db.Close()
		if errors.Is(err, ErrJobStoreDamaged) {
			return nil, err, nil
		}
		return nil, nil, err
	}
	return db, nil, nil
}

// checkDB reads every key and value of every bucket (a damaged page
// panics or faults here, in guard, rather than later in the daemon),
// then runs bbolt's consistency check.
func checkDB(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		var walk func(b *bolt.Bucket) error
		walk = func(b *bolt.Bucket) error {
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if v == nil {
					if sub := b.Bucket(k); sub != nil {
						if err := walk(sub); err != nil {
							return err
						}
					}
				}
			}
			return nil
		}
		err := tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return walk(b) })
		if err != nil {
			return err
		}
		var errs []error
		for err := range tx.Check() {
			if len(errs) < 10 {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
}

// initStore makes the buckets of a new store and checks the schema of an
// old one.
func initStore(tx *bolt.Tx, path string, logger *slog.Logger) error {
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
		return buildRunningIndex(tx, logger)
	}
	return nil
}

// guard runs fn, turning a panic or a memory fault in it (bbolt reading
// a damaged page) into an error wrapping ErrJobStoreDamaged.
func guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrJobStoreDamaged, r)
		}
	}()
	return fn()
}

// spooledJobs counts the job directories in spool.
func spooledJobs(spool string) int {
	ents, _ := os.ReadDir(spool)
	n := 0
	for _, e := range ents {
		if e.IsDir() {
			n++
		}
	}
	return n
}

// rebuild moves a damaged minion.db aside (if there is one), says so in
// an error log, and makes a new store from the spool: every job it holds
// a readable spec of, finished if it holds its result, with its origin,
// so that a resubmit still finds its job.
func (s *jobStore) rebuild(damage error) (*bolt.DB, error) {
	aside := ""
	if _, err := os.Lstat(s.path); err == nil {
		aside = s.path + ".damaged-" + time.Now().UTC().Format("20060102T150405.000000000Z")
		if err := os.Rename(s.path, aside); err != nil {
			return nil, fmt.Errorf("%v; moving it aside failed: %w", damage, err)
		}
	}
	s.logger.Error("minion.db is damaged: moved it aside, rebuilding the job store from the spool",
		"path", s.path, "moved_to", aside, "damage", damage)
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("rebuild %s: %w", s.path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := initStore(tx, s.path, s.logger); err != nil {
			return err
		}
		return s.addSpooled(tx, true)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("rebuild %s: %w", s.path, err)
	}
	return db, nil
}

// addSpooled records in the store the jobs of the spool it lacks (all of
// them, into a store being rebuilt): every job the spool holds a
// readable spec of, finished if it holds its result, with its origin, so
// that a resubmit still finds its job. A store that lost its last
// writes (bbolt falls back on its older meta page when the newer is
// damaged) gets them back this way.
func (s *jobStore) addSpooled(tx *bolt.Tx, rebuilding bool) error {
	ents, err := os.ReadDir(s.spool)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var n, running, skipped int
	for _, e := range ents {
		if !e.IsDir() || tx.Bucket(mbJobs).Get([]byte(e.Name())) != nil {
			continue
		}
		j, err := readLocalJob(filepath.Join(s.spool, e.Name()), false)
		if err != nil || j.ID != e.Name() {
			s.logger.Warn("minion.db: skipping a spool entry without a readable spec", "job", e.Name(), "err", err)
			skipped++
			continue
		}
		job := j.Job
		if job.State != status.Finished {
			job.State = status.Running
			running++
		}
		if err := tx.Bucket(mbOrigins).Put(originKey(job.Caller, job.OriginJobID), []byte(job.ID)); err != nil {
			return err
		}
		if err := putJob(tx, job); err != nil {
			return err
		}
		n++
	}
	switch {
	case rebuilding:
		s.logger.Error("minion.db rebuilt from the spool", "path", s.path, "jobs", n, "running", running, "skipped", skipped)
	case n > 0:
		s.logger.Error("minion.db lacked jobs the spool holds: added them", "path", s.path, "jobs", n, "running", running)
	}
	return nil
}

// use runs fn on the store's database, guarded: if bbolt panics or
// faults in it, the store is moved aside and rebuilt (once, whoever else
// found it damaged meanwhile), and the error returned.
func (s *jobStore) use(fn func(db *bolt.DB) error) error {
	s.mu.RLock()
	db, gen := s.db, s.gen
	var err error
	switch {
	case s.closed:
		err = fmt.Errorf("%s is closed: the daemon is stopping", s.path)
	case db == nil:
		err = fmt.Errorf("%w, and could not be rebuilt: see the daemon's log", ErrJobStoreDamaged)
	default:
		err = guard(func() error { return fn(db) })
	}
	s.mu.RUnlock()
	if db != nil && errors.Is(err, ErrJobStoreDamaged) {
		s.repair(gen, err)
		return status.Errorf(status.KindInternal, "%v (moved aside and rebuilt from the spool; try again)", err)
	}
	return err
}

func (s *jobStore) view(fn func(tx *bolt.Tx) error) error {
	return s.use(func(db *bolt.DB) error { return db.View(fn) })
}

func (s *jobStore) updateTx(fn func(tx *bolt.Tx) error) error {
	return s.use(func(db *bolt.DB) error { return db.Update(fn) })
}

// repair replaces the store found damaged in generation gen.
func (s *jobStore) repair(gen int, damage error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen || s.db == nil || s.closed {
		return
	}
	_ = guard(s.db.Close)
	db, err := s.rebuild(damage)
	if err != nil {
		s.logger.Error("minion.db could not be rebuilt: async jobs fail until the daemon restarts", "err", err)
	}
	s.db = db
	s.gen++
}

// Close closes minion.db.
func (s *jobStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.db == nil {
		return nil
	}
	err := guard(s.db.Close)
	s.db = nil
	return err
}

// buildRunningIndex makes mbRunning from every job, once.
func buildRunningIndex(tx *bolt.Tx, logger *slog.Logger) error {
	rb, err := tx.CreateBucket(mbRunning)
	if err != nil {
		return err
	}
	return tx.Bucket(mbJobs).ForEach(func(k, v []byte) error {
		var j Job
		if err := json.Unmarshal(v, &j); err != nil {
			logger.Error("minion.db: skipping a job record that does not decode", "job", string(k), "err", err)
			return nil
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
	err = s.updateTx(func(tx *bolt.Tx) error {
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
		id, err := jobid.New()
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

// byOrigin returns the job of caller's origin, if there is one.
func (s *jobStore) byOrigin(caller, origin string) (job Job, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		id := tx.Bucket(mbOrigins).Get(originKey(caller, origin))
		if id == nil {
			return nil
		}
		ok = true
		return getJob(tx, string(id), &job)
	})
	return job, ok, err
}

func getJob(tx *bolt.Tx, id string, job *Job) error {
	data := tx.Bucket(mbJobs).Get([]byte(id))
	if data == nil {
		return status.Errorf(status.KindLost, "no job %s on this minion", id)
	}
	if err := json.Unmarshal(data, job); err != nil {
		return fmt.Errorf("job %s: %w: %v", id, errJobRecord, err)
	}
	return nil
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
	err := s.view(func(tx *bolt.Tx) error { return getJob(tx, id, &job) })
	return job, err
}

// update applies fn to a job and stores it, unless fn returns false.
func (s *jobStore) update(id string, fn func(*Job) bool) (Job, error) {
	var job Job
	err := s.updateTx(func(tx *bolt.Tx) error {
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
	err := s.view(func(tx *bolt.Tx) error {
		out = nil
		jb := tx.Bucket(mbJobs)
		return tx.Bucket(mbRunning).ForEach(func(k, _ []byte) error {
			v := jb.Get(k)
			if v == nil {
				return nil
			}
			var j Job
			if err := json.Unmarshal(v, &j); err != nil {
				s.logger.Error("minion.db: skipping a job record that does not decode", "job", string(k), "err", err)
				return nil
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
	err := s.view(func(tx *bolt.Tx) error {
		out = nil
		c := tx.Bucket(mbJobs).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var j Job
			if err := json.Unmarshal(v, &j); err != nil {
				s.logger.Error("minion.db: skipping a job record that does not decode", "job", string(k), "err", err)
				continue
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
	err := s.updateTx(func(tx *bolt.Tx) error {
		gone = nil
		jb, ob := tx.Bucket(mbJobs), tx.Bucket(mbOrigins)
		finished := 0
		c := jb.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var j Job
			if err := json.Unmarshal(v, &j); err != nil {
				s.logger.Error("minion.db: retention skips a job record that does not decode", "job", string(k), "err", err)
				continue
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
