package minion

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/overlordhq/overlord/status"
)

// openTestStore opens minion.db in a temporary directory, closed when
// the test ends.
func openTestStore(t *testing.T, dir string) *jobStore {
	t.Helper()
	s, err := openJobStore(filepath.Join(dir, "minion.db"), filepath.Join(dir, "spool"), newTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func addJob(t *testing.T, s *jobStore, caller, origin string, state status.State) Job {
	t.Helper()
	j, _, err := s.submit(caller, origin, nil, func(id string) Job {
		return Job{ID: id, OriginJobID: origin, Caller: caller, Module: "test", Method: "ping", State: state, CreatedAt: time.Now().UTC()}
	})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// putRaw stores data as job id's record, bypassing putJob.
func putRaw(t *testing.T, s *jobStore, id string, data []byte) {
	t.Helper()
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(mbJobs).Put([]byte(id), data) }); err != nil {
		t.Fatal(err)
	}
}

func ids(js []Job) []string {
	out := make([]string, len(js))
	for i, j := range js {
		out[i] = j.ID
	}
	return out
}

// running reads the running jobs only: a record it has no reason to read
// (here, one that does not even decode) does not disturb it.
func TestJobStoreRunningReadsOnlyRunningJobs(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	putRaw(t, s, "00000000-0000-7000-8000-000000000000", []byte("not JSON"))
	run := addJob(t, s, "a", "o1", status.Running)
	done := addJob(t, s, "a", "o2", status.Running)
	if _, err := s.update(done.ID, func(j *Job) bool { j.State = status.Finished; return true }); err != nil {
		t.Fatal(err)
	}
	got, err := s.running()
	if err != nil || len(got) != 1 || got[0].ID != run.ID {
		t.Fatalf("running: %v, %v; want only %s", ids(got), err, run.ID)
	}
}

// A store from before the index gets it built when opened.
func TestJobStoreBuildsTheRunningIndex(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	run := addJob(t, s, "a", "o1", status.Running)
	addJob(t, s, "a", "o2", status.Finished)
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(mbRunning) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTestStore(t, dir)
	got, err := s.running()
	if err != nil || len(got) != 1 || got[0].ID != run.ID {
		t.Fatalf("running after a rebuild: %v, %v; want only %s", ids(got), err, run.ID)
	}
	// Purged jobs leave the index.
	if _, err := s.update(run.ID, func(j *Job) bool { j.State = status.Finished; return true }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.purge(time.Now().Add(time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(mbRunning).Stats().KeyN; n != 0 {
			t.Errorf("%d entries left in the index", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// list stops at its limit: it reads no older job than it returns.
func TestJobStoreListStopsEarly(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	putRaw(t, s, "00000000-0000-7000-8000-000000000000", []byte("not JSON"))
	var mine []Job
	for i := range 6 {
		caller := "a"
		if i%2 == 1 {
			caller = "b"
		}
		j := addJob(t, s, caller, "o"+strconv.Itoa(i), status.Finished)
		if caller == "a" {
			mine = append(mine, j)
		}
	}
	got, err := s.list(2, "a")
	if err != nil || len(got) != 2 || got[0].ID != mine[2].ID || got[1].ID != mine[1].ID {
		t.Fatalf("list(2, a): %v, %v; want %s %s", ids(got), err, mine[2].ID, mine[1].ID)
	}
	// A broken record is skipped (and logged), not an error for all.
	if all, err := s.list(0, "a"); err != nil || len(all) != 3 {
		t.Errorf("list(0, a): %v, %v; want a's 3 jobs, the broken record skipped", ids(all), err)
	}
}
