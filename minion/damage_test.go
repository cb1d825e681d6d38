package minion

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overlordhq/overlord/modules/builtin"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// spooledStore makes a state directory whose minion.db and spool hold n
// finished jobs of caller "tester", with origins o0..o(n-1), as a daemon
// leaves them; it returns the jobs by origin.
func spooledStore(t *testing.T, dir string, n int) map[string]Job {
	t.Helper()
	s, err := openJobStore(filepath.Join(dir, "minion.db"), filepath.Join(dir, "spool"), newTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := map[string]Job{}
	for i := range n {
		origin := fmt.Sprintf("o%d", i)
		j := addJob(t, s, "tester", origin, status.Running)
		jdir := filepath.Join(dir, "spool", j.ID)
		if err := os.MkdirAll(jdir, 0o700); err != nil {
			t.Fatal(err)
		}
		sp, _ := json.Marshal(spec{JobID: j.ID, OriginJobID: origin, Caller: "tester", Module: "test", Method: "ping", CreatedAt: j.CreatedAt})
		o := outcome{OK: true, Result: json.RawMessage(`{"pong":true}`), FinishedAt: time.Now().UTC()}
		res, _ := json.Marshal(o)
		if err := writeFileAtomic(filepath.Join(jdir, specFile), sp); err != nil {
			t.Fatal(err)
		}
		if err := writeFileAtomic(filepath.Join(jdir, resultFile), res); err != nil {
			t.Fatal(err)
		}
		if j, err = s.update(j.ID, func(j *Job) bool {
			j.State, j.OK, j.Result, j.FinishedAt = status.Finished, true, o.Result, &o.FinishedAt
			return true
		}); err != nil {
			t.Fatal(err)
		}
		out[origin] = j
	}
	return out
}

// logBuffer collects a logger's output, for tests to look for lines in.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	t   testing.TB
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Log(strings.TrimSpace(string(p)))
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// checkRebuiltDaemon opens the async jobs of dir and checks that they
// serve what the spool holds: a listing of every job, the same job for a
// resubmit of the same origin, and a new job that runs.
func checkRebuiltDaemon(t *testing.T, dir string, want map[string]Job, newJob bool) (damaged bool) {
	t.Helper()
	logs := &logBuffer{t: t}
	a := newAsyncLogged(t, dir, logs)
	defer a.Close()
	list, err := a.list(0, "")
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(list) != len(want) {
		t.Errorf("list: %d jobs, want %d", len(list), len(want))
	}
	for origin, j := range want {
		got, created, err := a.submit("tester", &rpc.SubmitParams{OriginJobID: origin, Module: "test", Method: "ping"})
		if err != nil || created || got.ID != j.ID || got.State != status.Finished || !got.OK {
			t.Errorf("resubmit of %s: job %s created %v state %s ok %v err %v; want job %s, FINISHED ok, not created",
				origin, got.ID, created, got.State, got.OK, err, j.ID)
		}
	}
	if newJob {
		j := submit(t, a, "a-new-one", "test", "ping", nil)
		if st := waitState(t, a, j.ID, isFinished); !st.OK {
			t.Errorf("new job after the rebuild: %+v", st.Error)
		}
	}
	aside, _ := filepath.Glob(filepath.Join(dir, "minion.db.damaged-*"))
	damaged = strings.Contains(logs.String(), "level=ERROR msg=\"minion.db is damaged")
	if damaged != (len(aside) == 1) {
		t.Errorf("damage logged %v, files moved aside %v: want both or neither", damaged, aside)
	}
	return damaged
}

func newAsyncLogged(t *testing.T, dir string, logs *logBuffer) *asyncJobs {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a, err := openAsync(dir, []string{exe, "-test.run=^$"}, builtin.Registry(), time.Hour, 1000, slogTo(logs))
	if err != nil {
		t.Fatalf("open with a damaged minion.db: %v", err)
	}
	return a
}

// TestJobStoreDamagedPage overwrites each page of a minion.db of 80 jobs
// with garbage in turn: the daemon opens every time (it does not panic),
// moves a damaged file aside with an error in its log, and serves what
// the spool holds.
func TestJobStoreDamagedPage(t *testing.T) {
	t.Parallel()
	tmpl := t.TempDir()
	want := spooledStore(t, tmpl, 80)
	db, err := os.ReadFile(filepath.Join(tmpl, "minion.db"))
	if err != nil {
		t.Fatal(err)
	}
	pages := len(db) / 4096
	if pages < 8 {
		t.Fatalf("minion.db has %d pages; want a store of several", pages)
	}
	rng := rand.New(rand.NewPCG(8, 8))
	damaged := 0
	for k := range pages {
		t.Run(fmt.Sprintf("page%d", k), func(t *testing.T) {
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(tmpl)); err != nil {
				t.Fatal(err)
			}
			bad := bytes.Clone(db)
			for i := k * 4096; i < (k+1)*4096; i++ {
				bad[i] = byte(rng.Uint32())
			}
			if err := os.WriteFile(filepath.Join(dir, "minion.db"), bad, 0o600); err != nil {
				t.Fatal(err)
			}
			if checkRebuiltDaemon(t, dir, want, k == pages/2) {
				damaged++
			}
		})
	}
	t.Logf("%d pages overwritten, %d found damaged (the others were free or a meta page with a good twin)", pages, damaged)
	if damaged == 0 {
		t.Error("no damage found in any page")
	}
}

// TestJobStoreTruncated: a minion.db cut to 0 bytes while the spool holds
// jobs is damage, not a new store.
func TestJobStoreTruncated(t *testing.T) {
	dir := t.TempDir()
	want := spooledStore(t, dir, 20)
	if err := os.Truncate(filepath.Join(dir, "minion.db"), 0); err != nil {
		t.Fatal(err)
	}
	if !checkRebuiltDaemon(t, dir, want, true) {
		t.Error("a 0-byte minion.db with a spool of 20 jobs was not reported damaged")
	}
}

// TestJobStoreDamagedWhileOpen: a page damaged under a running daemon
// fails the operation that finds it, not the daemon, and the store is
// rebuilt from the spool.
func TestJobStoreDamagedWhileOpen(t *testing.T) {
	dir := t.TempDir()
	want := spooledStore(t, dir, 80)
	logs := &logBuffer{t: t}
	a := newAsyncLogged(t, dir, logs)
	defer a.Close()
	// Overwrite every page past the metas and the freelist, in place
	// (the store's map sees it).
	f, err := os.OpenFile(filepath.Join(dir, "minion.db"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	garbage := bytes.Repeat([]byte{0xA5}, int(fi.Size())-3*4096)
	if _, err := f.WriteAt(garbage, 3*4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := a.list(0, ""); err == nil {
		t.Log("the first listing did not touch a damaged page")
	}
	list, err := a.list(0, "")
	if err != nil || len(list) != len(want) {
		t.Fatalf("list after the damage: %d jobs, %v; want %d", len(list), err, len(want))
	}
	if !strings.Contains(logs.String(), "minion.db is damaged") {
		t.Error("no error logged for the damage")
	}
	for origin, j := range want {
		got, created, err := a.submit("tester", &rpc.SubmitParams{OriginJobID: origin, Module: "test", Method: "ping"})
		if err != nil || created || got.ID != j.ID {
			t.Errorf("resubmit of %s: job %s created %v err %v; want job %s", origin, got.ID, created, err, j.ID)
		}
	}
}

// TestJobStoreBadRecord: one record that does not decode is skipped,
// and logged, by listings and by retention; the others are served and
// purged as ever.
func TestJobStoreBadRecord(t *testing.T) {
	logs := &logBuffer{t: t}
	dir := t.TempDir()
	s, err := openJobStore(filepath.Join(dir, "minion.db"), filepath.Join(dir, "spool"), slogTo(logs))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var good []Job
	for i := range 4 {
		good = append(good, addJob(t, s, "a", fmt.Sprintf("o%d", i), status.Finished))
	}
	putRaw(t, s, good[1].ID[:len(good[1].ID)-1]+"x", []byte(`{"job_id": not JSON`))
	list, err := s.list(0, "")
	if err != nil || len(list) != 4 {
		t.Fatalf("list: %v, %v; want the 4 good jobs", ids(list), err)
	}
	if !strings.Contains(logs.String(), "does not decode") {
		t.Error("the bad record was not logged")
	}
	gone, err := s.purge(time.Now().Add(-time.Hour), 1)
	if err != nil || len(gone) != 3 {
		t.Fatalf("purge: %v, %v; want 3 jobs purged", gone, err)
	}
	if list, err = s.list(0, ""); err != nil || len(list) != 1 || list[0].ID != good[3].ID {
		t.Fatalf("list after purge: %v, %v; want %s", ids(list), err, good[3].ID)
	}
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// TestAsyncStatusWithABadRecord: Minion.Status of several jobs, one of
// whose records does not decode, answers for the others and gives that
// one an error of its own.
func TestAsyncStatusWithABadRecord(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	good := submit(t, a, "o1", "test", "ping", nil)
	waitState(t, a, good.ID, isFinished)
	bad := good.ID[:len(good.ID)-1] + "x"
	putRaw(t, a.store, bad, []byte("{not JSON"))
	st, err := a.status(&rpc.StatusParams{JobIDs: []string{good.ID, bad}}, "")
	if err != nil || len(st) != 2 {
		t.Fatalf("status: %+v, %v; want two entries", st, err)
	}
	if !st[0].OK || st[1].Error == nil || st[1].Error.Kind != status.KindInternal || !strings.Contains(st[1].Error.Message, "does not decode") {
		t.Errorf("status: %+v / %+v; want the good job ok and the bad one kind internal", st[0], st[1].Error)
	}
}
