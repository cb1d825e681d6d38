// Package jobstest opens overlord.db stores for tests, in the way bbolt's
// own internal/btesting does: each store lives in t.TempDir(), and when
// the test ends its file is checked for consistency with bbolt's
// tx.Check, so a test that corrupts the file fails even if its own
// assertions pass.
package jobstest

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/overlordhq/overlord/jobs"
)

// LockTimeout is the lock timeout of stores made by New: long enough for
// a loaded CI machine, short enough that a test stuck on a lock fails
// quickly.
const LockTimeout = 5 * time.Second

// EtcdTimeout is how long each request of a store made by NewEtcd waits
// for etcd: an in-process cluster built with the race detector, on a CI
// machine running other packages' tests, can take seconds to commit a
// large write.
const EtcdTimeout = 30 * time.Second

// New returns an initialised store in a new overlord.db under t.TempDir(),
// checked for consistency when the test ends.
//
// After UseEtcd, it returns a store on that etcd cluster instead, under
// a prefix of its own, checked with Store.Check when the test ends.
func New(t testing.TB) *jobs.Store {
	t.Helper()
	if etcdAddr != "" {
		return NewEtcd(t, etcdAddr)
	}
	s := jobs.New(filepath.Join(t.TempDir(), "overlord.db"), LockTimeout)
	if err := s.Init(); err != nil {
		t.Fatalf("jobstest: init store: %v", err)
	}
	t.Cleanup(func() { Check(t, s.Path()) })
	return s
}

var (
	etcdAddr  string
	etcdStore atomic.Int64
)

// UseEtcd makes New return stores on the etcd cluster at endpoints
// (http URLs or HOST:PORT) until the returned function is called. Tests
// that use it must not run in parallel with tests that do not.
func UseEtcd(endpoints []string) (restore func()) {
	var hosts []string
	for _, e := range endpoints {
		hosts = append(hosts, strings.TrimPrefix(e, "http://"))
	}
	etcdAddr = "etcd://" + strings.Join(hosts, ",")
	return func() { etcdAddr = "" }
}

// NewEtcd returns an initialised store at addr (etcd://HOST:PORT), under
// a prefix of its own, checked with Store.Check when the test ends.
func NewEtcd(t testing.TB, addr string) *jobs.Store {
	t.Helper()
	addr = fmt.Sprintf("%s/jobstest-%d", addr, etcdStore.Add(1))
	s, err := jobs.Open(addr, "", jobs.Options{LockTimeout: EtcdTimeout})
	if err != nil {
		t.Fatalf("jobstest: open %s: %v", addr, err)
	}
	if err := s.Init(); err != nil {
		t.Fatalf("jobstest: init %s: %v", addr, err)
	}
	t.Cleanup(func() {
		problems, err := s.Check()
		if err != nil {
			t.Errorf("jobstest: check %s: %v", addr, err)
		}
		for _, p := range problems {
			t.Errorf("jobstest: %s is inconsistent: %s", addr, p)
		}
		s.Close()
	})
	return s
}

// Check fails t if the bbolt file at path is inconsistent: pages
// unreachable or reachable twice, keys out of order, a freelist that
// disagrees with the pages in use.
func Check(t testing.TB, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: LockTimeout})
	if err != nil {
		t.Errorf("jobstest: open %s to check it: %v", path, err)
		return
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for cerr := range tx.Check() {
			t.Errorf("jobstest: %s is inconsistent: %v", path, cerr)
		}
		return nil
	})
	if err != nil {
		t.Errorf("jobstest: check %s: %v", path, err)
	}
}

// Hold opens the bbolt file at path for writing, as another overlord
// process would, and so holds its exclusive lock until the returned
// function is called (or the test ends).
func Hold(t testing.TB, path string) (release func()) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: LockTimeout})
	if err != nil {
		t.Fatalf("jobstest: hold %s: %v", path, err)
	}
	var closed bool
	release = func() {
		if !closed {
			closed = true
			db.Close()
		}
	}
	t.Cleanup(release)
	return release
}

// PreEnrolment returns a new store as a version before online enrolment
// made it: without the buckets of tokens, requests, certificates and the
// revocation list.
func PreEnrolment(t testing.TB) *jobs.Store {
	t.Helper()
	s := jobs.New(filepath.Join(t.TempDir(), "overlord.db"), LockTimeout)
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(s.Path(), 0o600, &bolt.Options{Timeout: LockTimeout})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range []string{"tokens", "requests", "certs", "crl"} {
			if err := tx.DeleteBucket([]byte(b)); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
