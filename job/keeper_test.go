package job_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/overlordhq/overlord/job"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/jobs/jobstest"
	"github.com/overlordhq/overlord/status"
)

func newKeeper(t *testing.T) *job.Keeper {
	t.Helper()
	s := jobstest.New(t)
	return job.New(s, filepath.Dir(s.Path()))
}

// withFiles creates job id's lock and log, as a driver would.
func withFiles(t *testing.T, k *job.Keeper, id string) {
	t.Helper()
	lock, ok, err := k.Lock(id)
	if err != nil || !ok {
		t.Fatalf("Lock(%s) = %v, %v", id, ok, err)
	}
	lock.Close()
	if err := os.WriteFile(k.LogPath(id), []byte("log\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func hasFiles(t *testing.T, k *job.Keeper, id string) bool {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(k.Dir, id+".*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(names) > 0
}

// TestLock: a job's driver lock is held by one holder at a time, Alive
// tells whether it is held, and RemoveFiles takes the files away.
func TestLock(t *testing.T) {
	k := newKeeper(t)
	if k.Alive("j1") {
		t.Error("Alive before any lock")
	}
	lock, ok, err := k.Lock("j1")
	if err != nil || !ok {
		t.Fatalf("Lock = %v, %v", ok, err)
	}
	if !k.Alive("j1") {
		t.Error("not Alive while locked")
	}
	if _, ok, err := k.Lock("j1"); err != nil || ok {
		t.Errorf("second Lock = %v, %v; want false, nil", ok, err)
	}
	lock.Close()
	if k.Alive("j1") {
		t.Error("Alive after the lock was let go")
	}
	withFiles(t, k, "j1")
	k.RemoveFiles("j1")
	if hasFiles(t, k, "j1") {
		t.Error("files left after RemoveFiles")
	}
}

// TestRetentionRemovesFiles: whoever deletes a job's record, Purge or
// the automatic retention of Create, deletes its lock and log too, and
// leaves the others' alone.
func TestRetentionRemovesFiles(t *testing.T) {
	k := newKeeper(t)
	old := time.Now().Add(-job.DefaultRetention - 24*time.Hour).UTC()
	mk := func(id string, state status.State, at time.Time) {
		t.Helper()
		if err := k.Store.CreateJob(&jobs.Record{ID: id, State: state, CreatedAt: at}, []string{"web1"}); err != nil {
			t.Fatal(err)
		}
		withFiles(t, k, id)
	}
	mk("00-old-finished", status.Finished, old)
	mk("01-old-running", status.Running, old)
	mk("02-new-finished", status.Finished, time.Now().Add(-time.Hour).UTC())

	if err := k.Create(&jobs.Record{ID: "03-new"}, []string{"web1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Store.Header("00-old-finished"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("old finished job after Create: %v, want purged", err)
	}
	if hasFiles(t, k, "00-old-finished") {
		t.Error("the automatic retention left the purged job's files")
	}
	for _, id := range []string{"01-old-running", "02-new-finished"} {
		if _, err := k.Store.Header(id); err != nil || !hasFiles(t, k, id) {
			t.Errorf("job %s (err %v) or its files went with the retention", id, err)
		}
	}

	gone, err := k.Purge(time.Now(), 0)
	if err != nil || len(gone) != 1 || gone[0] != "02-new-finished" {
		t.Fatalf("Purge = %v, %v", gone, err)
	}
	if hasFiles(t, k, "02-new-finished") {
		t.Error("Purge left the purged job's files")
	}
	if !hasFiles(t, k, "01-old-running") {
		t.Error("Purge took a running job's files")
	}
}

// TestSettleOrphan: a synchronous job nobody holds ends with its open
// entries lost, and its files go; one whose lock is held is left alone.
func TestSettleOrphan(t *testing.T) {
	k := newKeeper(t)
	rec := &jobs.Record{ID: "j1", Module: "test", Method: "ping"}
	if err := k.Create(rec, []string{"web1", "web2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Store.Write("j1", map[string]status.Result{"web1": {State: status.Finished, OK: true}}, nil); err != nil {
		t.Fatal(err)
	}
	lock, _, err := k.Lock("j1")
	if err != nil {
		t.Fatal(err)
	}
	if err := k.SettleOrphan("j1"); err != nil {
		t.Fatal(err)
	}
	if hdr, _ := k.Store.Header("j1"); hdr.State == status.Finished {
		t.Error("settled a job whose lock is held")
	}
	lock.Close()
	if err := k.SettleOrphan("j1"); err != nil {
		t.Fatal(err)
	}
	hdr, entries, err := k.Store.Job("j1")
	if err != nil {
		t.Fatal(err)
	}
	if hdr.State != status.Finished || !entries["web1"].OK {
		t.Errorf("job %s, web1 %+v", hdr.State, entries["web1"])
	}
	if e := entries["web2"]; e.State != status.Finished || e.Error == nil || e.Error.Kind != status.KindLost {
		t.Errorf("web2 %+v, want FINISHED lost", e)
	}
	if _, err := os.Stat(filepath.Join(k.Dir, "j1.lock")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("lock file after settling: %v", err)
	}
}
