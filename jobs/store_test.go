package jobs_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/jobs/jobstest"
	"github.com/overlordhq/overlord/status"
)

// operations are every Store method, each as a caller would use it.
func operations(s *jobs.Store) map[string]func() error {
	return map[string]func() error{
		"Minions":      func() error { _, err := s.Minions(); return err },
		"Inventory":    func() error { _, err := s.Inventory(); return err },
		"AddMinion":    func() error { return s.AddMinion(jobs.Minion{Name: "new"}) },
		"RemoveMinion": func() error { return s.RemoveMinion("web1") },
		"TouchMinions": func() error { return s.TouchMinions([]string{"web1"}, time.Now()) },
		"AddToGroup":   func() error { return s.AddToGroup("g", []string{"web1"}) },
		"RemoveGroup":  func() error { return s.RemoveGroup("g", nil) },
		"CreateJob":    func() error { return s.CreateJob(&jobs.Record{}, []string{"web1"}) },
		"Write":        func() error { _, err := s.Write("j", map[string]status.Result{}, nil); return err },
		"Job":          func() error { _, _, err := s.Job("j"); return err },
		"ListJobs":     func() error { _, err := s.ListJobs(jobs.ListOptions{}); return err },
	}
}

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "sub")
	s := jobs.New(filepath.Join(dir, "overlord.db"), time.Second)
	if s.Path() != filepath.Join(dir, "overlord.db") {
		t.Errorf("Path = %s", s.Path())
	}
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, s.Path(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	addMinions(t, s, "web1")
	if err := s.Init(); err != nil {
		t.Fatalf("second Init: %v", err)
	}
	if got := minionNames(t, s); len(got) != 1 {
		t.Errorf("second Init lost data: %v", got)
	}
	jobstest.Check(t, s.Path())
}

func TestNoStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "overlord.db")
	s := jobs.New(path, time.Second)
	for name, op := range operations(s) {
		t.Run(name, func(t *testing.T) {
			err := op()
			if !errors.Is(err, jobs.ErrNoStore) {
				t.Fatalf("error %v, want ErrNoStore", err)
			}
			if !strings.Contains(err.Error(), "overlord ca init") || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q should say where it looked and what to run", err)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Error("the operation created the file")
			}
		})
	}
}

// While another process holds overlord.db for writing, every operation
// gives up after the lock timeout with ErrLocked.
func TestLockTimeout(t *testing.T) {
	s := jobstest.New(t)
	addMinions(t, s, "web1")
	release := jobstest.Hold(t, s.Path())
	const timeout = 150 * time.Millisecond
	locked := jobs.New(s.Path(), timeout)
	for name, op := range operations(locked) {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			err := op()
			took := time.Since(start)
			if !errors.Is(err, jobs.ErrLocked) {
				t.Fatalf("error %v, want ErrLocked", err)
			}
			// bbolt gives up one retry interval (50ms) early.
			if took < timeout-60*time.Millisecond || took > timeout+3*time.Second {
				t.Errorf("gave up after %s, want about %s", took, timeout)
			}
			if !strings.Contains(err.Error(), s.Path()) || !strings.Contains(err.Error(), "150ms") {
				t.Errorf("error %q should name the file and the wait", err)
			}
		})
	}
	release()
	if got := minionNames(t, locked); len(got) != 1 {
		t.Errorf("after release: %v", got)
	}
}

// A lock held for less than the timeout is waited for.
func TestLockWait(t *testing.T) {
	s := jobstest.New(t)
	release := jobstest.Hold(t, s.Path())
	time.AfterFunc(100*time.Millisecond, release)
	waiting := jobs.New(s.Path(), 5*time.Second)
	if err := waiting.AddMinion(jobs.Minion{Name: "web1"}); err != nil {
		t.Fatalf("AddMinion while the lock is briefly held: %v", err)
	}
}

// A file that is not an overlord store is refused with a clear error, and
// left exactly as it was.
func TestNotAStore(t *testing.T) {
	boltNoMeta := func(t *testing.T, path string) {
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err }); err != nil {
			t.Fatal(err)
		}
	}
	schema := func(v string) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			s := jobs.New(path, time.Second)
			if err := s.Init(); err != nil {
				t.Fatal(err)
			}
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), []byte(v))
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, path string)
		msg   string
	}{
		{"text", func(t *testing.T, path string) { write(t, path, []byte("hello, this is not a database\n")) }, ""},
		{"random bytes", func(t *testing.T, path string) { write(t, path, bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 8192)) }, ""},
		{"another bbolt file", boltNoMeta, "not an overlord store"},
		{"newer schema", schema("2"), "schema version 2"},
		{"bad schema", schema("one"), `bad schema version "one"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "overlord.db")
			tt.setup(t, path)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			s := jobs.New(path, time.Second)
			ops := operations(s)
			for name, op := range ops {
				err := op()
				if err == nil {
					t.Errorf("%s succeeded", name)
					continue
				}
				if errors.Is(err, jobs.ErrNoStore) || errors.Is(err, jobs.ErrLocked) {
					t.Errorf("%s: error %v, want one about the file's content", name, err)
				}
				if tt.msg != "" && !strings.Contains(err.Error(), tt.msg) {
					t.Errorf("%s: error %q does not say %q", name, err, tt.msg)
				}
				if tt.msg == "" && !strings.Contains(err.Error(), path) {
					t.Errorf("%s: error %q does not name the file", name, err)
				}
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Error("the file was changed")
			}
			if tt.name == "another bbolt file" {
				return // Init: see TestInitAdoptsForeignFile
			}
			if err := s.Init(); err == nil {
				t.Error("Init succeeded")
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("Init changed the file")
			}
		})
	}
}

// Init on a bbolt file of some other program (buckets, no meta) should
// refuse it as it refuses a newer schema, not add its buckets to it.
func TestInitAdoptsForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "overlord.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	err = jobs.New(path, time.Second).Init()
	if err == nil {
		t.Error("jobs.Store.Init on a bbolt file with a bucket \"other\" and no meta bucket " +
			"adopted it instead of refusing it as not an overlord store")
	} else if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "another program") {
		t.Errorf("Init on another program's bbolt file: %v; want an error naming the file as another program's", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Errorf("Init refused another program's bbolt file but changed it (%d bytes before, %d after)", len(before), len(after))
	}
}

// An empty overlord.db (a crash mid-create, a full disk, `touch`) is no
// store either; a write must not quietly turn it into something else.
func TestEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "overlord.db")
	write(t, path, nil)
	s := jobs.New(path, time.Second)
	_, readErr := s.Minions()
	if readErr == nil {
		t.Error("Minions on an empty file succeeded")
	}
	err := s.AddMinion(jobs.Minion{Name: "web1"})
	if err == nil {
		t.Error("AddMinion on an empty file succeeded")
	}
	fi, _ := os.Stat(path)
	if fi.Size() != 0 {
		t.Errorf("AddMinion on an empty overlord.db failed (%v) but first rewrote it as a %d-byte file; "+
			"a read before that failed with %q", err, fi.Size(), readErr)
	}
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Writes made at once by one process are committed in groups (they pile
// up while another process holds the store), and a write that fails in a
// group fails alone: the others are made.
func TestGroupedWrites(t *testing.T) {
	s := jobstest.New(t)
	dup := &jobs.Record{ID: "01a00000-0000-7000-8000-000000000000", Target: "web1", Module: "test", Method: "ping"}
	if err := s.CreateJob(dup, []string{"web1"}); err != nil {
		t.Fatal(err)
	}
	release := jobstest.Hold(t, s.Path())
	const n = 40
	errs := make(chan error, n+1)
	var ids []string
	for i := range n {
		rec := &jobs.Record{ID: fmt.Sprintf("01a00000-0000-7000-8000-%012d", i+1), Target: "web1", Module: "test", Method: "ping"}
		ids = append(ids, rec.ID)
		go func() { errs <- s.CreateJob(rec, []string{"web1"}) }()
	}
	again := *dup
	go func() { errs <- s.CreateJob(&again, []string{"web1"}) }()
	release()
	failed := 0
	for range n + 1 {
		if err := <-errs; err != nil {
			failed++
			if !strings.Contains(err.Error(), dup.ID) {
				t.Errorf("unexpected error: %v", err)
			}
		}
	}
	if failed != 1 {
		t.Errorf("%d writes failed, want 1 (the job created twice)", failed)
	}
	for _, id := range ids {
		if _, _, err := s.Job(id); err != nil {
			t.Errorf("job %s: %v", id, err)
		}
	}
}
