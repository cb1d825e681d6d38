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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/overlordhq/overlord/jobs/internal/etcdkv"
	"github.com/overlordhq/overlord/jobs/internal/kv"
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
	// ErrAmbiguous is returned for a job ID prefix that matches more
	// than one job.
	ErrAmbiguous = errors.New("ambiguous job ID prefix")

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
	// etcd, if set, is the store (an etcd cluster) instead of the file
	// at path; addr is its address as given, opts how it was opened.
	etcd *etcdkv.DB
	addr string
	opts Options
	// abandoned counts the waits for the queue given up but still
	// blocked in the kernel (see lock.go).
	abandoned atomic.Int32
	// waiting is the group of this process's writes waiting for the
	// store's lock: a write made meanwhile joins it (see update).
	wmu     sync.Mutex
	waiting *writeGroup
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
	if s.etcd != nil {
		return s.etcdInit()
	}
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
	return db.Update(func(btx *bolt.Tx) error { return initTx(kv.Bolt(btx), s.path) })
}

// initTx creates the store's buckets and schema version in tx, unless tx
// is some other program's (where names the store for the error).
func initTx(tx kv.Tx, where string) error {
	{
		if tx.Bucket(bucketMeta) == nil {
			foreign := false
			_ = tx.ForEach(func([]byte, kv.Bucket) error { foreign = true; return nil })
			if foreign {
				if strings.HasPrefix(where, "the store at") {
					return fmt.Errorf("%s holds buckets of another program (it has no meta bucket); not using it", where)
				}
				return fmt.Errorf("%s is a bbolt file of another program (it has no meta bucket); not using it", where)
			}
		}
		for _, b := range [][]byte{bucketMeta, bucketMinions, bucketGroups, bucketJobs, bucketSeen, bucketOpen, bucketTokens, bucketRequests, bucketCerts, bucketCRL, bucketGateways} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if meta.Get(keySchema) == nil {
			return meta.Put(keySchema, []byte(strconv.Itoa(SchemaVersion)))
		}
		return checkSchema(tx)
	}
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
func (s *Store) view(fn func(tx kv.Tx) error) error {
	if s.etcd != nil {
		return s.etcdView(fn)
	}
	return s.guard(func() error { return s.viewOnce(fn) })
}

func (s *Store) viewOnce(fn func(tx kv.Tx) error) error {
	db, done, err := s.open(true)
	if err != nil {
		return err
	}
	defer done()
	return db.View(func(btx *bolt.Tx) error {
		tx := kv.Bolt(btx)
		if err := checkSchema(tx); err != nil {
			return err
		}
		return fn(tx)
	})
}

// update runs fn in a write transaction on a freshly opened file.
//
// The writes of one process are committed in groups: a write made while
// another of this process waits for the store's lock joins it, and the
// group is one transaction once the lock is had (one open, one sync), as
// bbolt's DB.Batch does within a process. The overlord service's drivers
// write at once; each would otherwise queue for the lock on its own. If a
// write of the group fails, the group's transaction is rolled back and
// each write is made again alone, so each gets its own outcome: fn may run
// twice, and must only act on the store.
func (s *Store) update(fn func(tx kv.Tx) error) error {
	if s.etcd != nil {
		return s.etcdUpdate(fn)
	}
	s.wmu.Lock()
	if g := s.waiting; g != nil {
		w := groupedWrite{fn: fn, err: make(chan error, 1)}
		g.writes = append(g.writes, w)
		s.wmu.Unlock()
		return <-w.err
	}
	w := groupedWrite{fn: fn, err: make(chan error, 1)}
	g := &writeGroup{writes: []groupedWrite{w}}
	s.waiting = g
	s.wmu.Unlock()
	s.commitGroup(g)
	return <-w.err
}

// writeGroup is a group of writes made in one transaction.
type writeGroup struct {
	writes []groupedWrite
}

type groupedWrite struct {
	fn  func(tx kv.Tx) error
	err chan error // buffered: told once
}

// commitGroup opens the store for g, closes g to new writes, and tells
// every write of g its outcome, whatever happens.
func (s *Store) commitGroup(g *writeGroup) {
	var writes []groupedWrite
	closeGroup := func() {
		s.wmu.Lock()
		if s.waiting == g {
			s.waiting = nil
		}
		writes = g.writes
		s.wmu.Unlock()
	}
	told := 0
	err := s.guard(func() error {
		db, done, err := s.open(false)
		closeGroup() // with the lock, or without it: later writes make a new group
		if err != nil {
			return err
		}
		defer done()
		err = db.Update(func(btx *bolt.Tx) error {
			tx := kv.Bolt(btx)
			if err := prepareWrite(tx); err != nil {
				return err
			}
			for _, w := range writes {
				if err := w.fn(tx); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil || len(writes) == 1 {
			for _, w := range writes {
				w.err <- err
				told++
			}
			return nil
		}
		// One of them failed: each alone, for its own outcome.
		for _, w := range writes {
			w.err <- db.Update(func(btx *bolt.Tx) error {
				tx := kv.Bolt(btx)
				if err := prepareWrite(tx); err != nil {
					return err
				}
				return w.fn(tx)
			})
			told++
		}
		return nil
	})
	if writes == nil {
		closeGroup()
	}
	for _, w := range writes[told:] {
		w.err <- err
	}
}

// prepareWrite checks the schema and builds what a store made by an older
// version lacks, at the start of every write transaction.
func prepareWrite(tx kv.Tx) error {
	if err := checkSchema(tx); err != nil {
		return err
	}
	return indexOpenJobs(tx)
}

// indexOpenJobs builds the index of jobs not FINISHED in a store made
// before it existed (once: afterwards CreateJob and Write keep it).
func indexOpenJobs(tx kv.Tx) error {
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

func checkSchema(tx kv.Tx) error { return checkSchemaOf(tx, "overlord.db") }

// checkSchemaOf is checkSchema, naming the store name in errors.
func checkSchemaOf(tx kv.Tx, name string) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return fmt.Errorf("%s has no meta bucket: not an overlord store", name)
	}
	v, err := strconv.Atoi(string(meta.Get(keySchema)))
	if err != nil {
		return fmt.Errorf("%s has a bad schema version %q", name, meta.Get(keySchema))
	}
	if v != SchemaVersion {
		return fmt.Errorf("%s has schema version %d; this overlord reads version %d", name, v, SchemaVersion)
	}
	return nil
}

func getJSON(b interface{ Get([]byte) []byte }, key []byte, v any) error {
	data := b.Get(key)
	if data == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("corrupt record %q: %w", key, err)
	}
	return nil
}

func putJSON(b interface{ Put(k, v []byte) error }, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}
