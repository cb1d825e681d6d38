package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/overlordhq/overlord/status"
)

// SchemaVersion is the layout version this package reads and writes.
const SchemaVersion = 1

// DefaultLockTimeout bounds the wait for overlord.db's lock.
const DefaultLockTimeout = 10 * time.Second

var (
	// ErrLocked is returned when another process held overlord.db's lock
	// for longer than the lock timeout.
	ErrLocked = errors.New("overlord.db is busy: another overlord process held its lock too long")

	// ErrNoStore is returned when overlord.db does not exist yet.
	ErrNoStore = errors.New("no overlord.db: run 'overlord ca init' first")

	// ErrNotFound is returned for a job, minion or group that does not exist.
	ErrNotFound = errors.New("not found")

	// ErrExists is returned when adding a minion or group that exists.
	ErrExists = errors.New("already exists")
)

var (
	bucketMeta    = []byte("meta")
	bucketMinions = []byte("minions")
	bucketGroups  = []byte("groups")
	bucketJobs    = []byte("jobs")
	bucketSeen    = []byte("seen")
	bucketOpen    = []byte("open")
	keyJob        = []byte("job")
	keySchema     = []byte("schema_version")
)

// Store is overlord.db. Its methods are safe to call from several
// goroutines and processes at once.
type Store struct {
	path    string
	timeout time.Duration
	// abandoned counts the waits for the queue given up but still
	// blocked in the kernel (see lock.go).
	abandoned atomic.Int32
}

// New returns a Store for the file at path. lockTimeout bounds each wait
// for the file's lock; zero means DefaultLockTimeout.
func New(path string, lockTimeout time.Duration) *Store {
	if lockTimeout <= 0 {
		lockTimeout = DefaultLockTimeout
	}
	return &Store{path: path, timeout: lockTimeout}
}

// LockTimeout returns the bound on waits for the file's lock.
func (s *Store) LockTimeout() time.Duration { return s.timeout }

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Init creates the file and its buckets if they do not exist.
func (s *Store) Init() error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return err
	}
	if fi, err := os.Stat(s.path); err == nil && fi.Size() == 0 {
		return fmt.Errorf("%s is empty: not an overlord store", s.path)
	}
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{Timeout: s.timeout})
	if err != nil {
		return s.openError(err)
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			foreign := false
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { foreign = true; return nil })
			if foreign {
				return fmt.Errorf("%s is a bbolt file of another program (it has no meta bucket); not using it", s.path)
			}
		}
		for _, b := range [][]byte{bucketMeta, bucketMinions, bucketGroups, bucketJobs, bucketSeen, bucketOpen, bucketTokens, bucketRequests, bucketCerts, bucketCRL} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if meta.Get(keySchema) == nil {
			return meta.Put(keySchema, []byte(strconv.Itoa(SchemaVersion)))
		}
		return checkSchema(tx)
	})
}

func (s *Store) openError(err error) error {
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("%w (waited %s for %s)", ErrLocked, s.timeout, s.path)
	}
	return fmt.Errorf("open %s: %w", s.path, err)
}

// open opens the file for one operation, after its turn in the queue
// (see lock.go); the whole wait is bounded by the lock timeout. done
// closes the file and lets the next operation go.
func (s *Store) open(readOnly bool) (db *bolt.DB, done func(), err error) {
	fi, err := os.Stat(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w (looked for %s)", ErrNoStore, s.path)
	}
	if err == nil && fi.Size() == 0 {
		// bbolt would turn an empty file into a database; it is not ours.
		return nil, nil, fmt.Errorf("%s is empty: not an overlord store", s.path)
	}
	q, err := s.lockQueue(s.timeout)
	if err != nil {
		return nil, nil, s.openError(bolterrors.ErrTimeout)
	}
	// With its turn, a process waits here only for readers still inside
	// or a process that does not queue (an older overlord).
	db, err = bolt.Open(s.path, 0o600, &bolt.Options{Timeout: s.timeout, ReadOnly: readOnly})
	if err != nil {
		q.release()
		return nil, nil, s.openError(err)
	}
	if readOnly {
		q.release() // readers share overlord.db's own lock
		return db, func() { db.Close() }, nil
	}
	return db, func() { db.Close(); q.release() }, nil
}

// guard turns a fault reading the memory-mapped file (a truncated or
// damaged overlord.db) into an error instead of a crash.
func (s *Store) guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s is damaged (%v); restore it from a backup, or move it away and run 'overlord ca init' in a new state directory", s.path, p)
		}
	}()
	return fn()
}

// view runs fn in a read transaction on a freshly opened file.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	return s.guard(func() error { return s.viewOnce(fn) })
}

func (s *Store) viewOnce(fn func(tx *bolt.Tx) error) error {
	db, done, err := s.open(true)
	if err != nil {
		return err
	}
	defer done()
	return db.View(func(tx *bolt.Tx) error {
		if err := checkSchema(tx); err != nil {
			return err
		}
		return fn(tx)
	})
}

// update runs fn in a write transaction on a freshly opened file.
func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	return s.guard(func() error { return s.updateOnce(fn) })
}

func (s *Store) updateOnce(fn func(tx *bolt.Tx) error) error {
	db, done, err := s.open(false)
	if err != nil {
		return err
	}
	defer done()
	return db.Update(func(tx *bolt.Tx) error {
		if err := checkSchema(tx); err != nil {
			return err
		}
		if err := indexOpenJobs(tx); err != nil {
			return err
		}
		return fn(tx)
	})
}

// indexOpenJobs builds the index of jobs not FINISHED in a store made
// before it existed (once: afterwards CreateJob and Write keep it).
func indexOpenJobs(tx *bolt.Tx) error {
	if tx.Bucket(bucketOpen) != nil {
		return nil
	}
	open, err := tx.CreateBucket(bucketOpen)
	if err != nil {
		return err
	}
	jobs := tx.Bucket(bucketJobs)
	return jobs.ForEachBucket(func(k []byte) error {
		rec, err := header(jobs, k)
		if err != nil {
			return err
		}
		if rec.State != status.Finished {
			return open.Put(k, nil)
		}
		return nil
	})
}

func checkSchema(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return errors.New("overlord.db has no meta bucket: not an overlord store")
	}
	v, err := strconv.Atoi(string(meta.Get(keySchema)))
	if err != nil {
		return fmt.Errorf("overlord.db has a bad schema version %q", meta.Get(keySchema))
	}
	if v != SchemaVersion {
		return fmt.Errorf("overlord.db has schema version %d; this overlord reads version %d", v, SchemaVersion)
	}
	return nil
}

func getJSON(b *bolt.Bucket, key []byte, v any) error {
	data := b.Get(key)
	if data == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("corrupt record %q: %w", key, err)
	}
	return nil
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}
