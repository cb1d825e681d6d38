package minion

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/overlordhq/overlord/modules/builtin"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// The test binary doubles as the job runner: the daemon under test starts
// it with runnerEnv set, and TestMain runs the job instead of the tests.
const runnerEnv = "OVERLORD_TEST_RUNNER"

func TestMain(m *testing.M) {
	if os.Getenv(runnerEnv) == "1" {
		daemon, _ := strconv.Atoi(os.Getenv(MinionPIDEnv))
		var opts runOptions
		if n, err := strconv.Atoi(os.Getenv(runnerDiskFullEnv)); err == nil {
			opts.output = func(w io.Writer) io.Writer { return &diskFullWriter{w: w, room: n} }
		}
		if err := runJob(os.Args[len(os.Args)-1], RunnerRegistry("", daemon), opts); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	// Every runner the tests start is this binary: set here once, not
	// by each test (t.Setenv), so that those tests may run in parallel.
	os.Setenv(runnerEnv, "1")
	os.Exit(m.Run())
}

func newAsync(t testing.TB, dir string) *asyncJobs {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a, err := openAsync(dir, []string{exe, "-test.run=^$"}, builtin.Registry(), time.Hour, 100, newTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func submit(t testing.TB, a *asyncJobs, origin, module, method string, args map[string]any) Job {
	t.Helper()
	j, _, err := a.submit("tester", &rpc.SubmitParams{OriginJobID: origin, Module: module, Method: method, Args: args})
	if err != nil {
		t.Fatalf("submit %s.%s: %v", module, method, err)
	}
	return j
}

// waitState polls the job until cond holds or 10 s pass.
func waitState(t testing.TB, a *asyncJobs, id string, cond func(rpc.JobStatus) bool) rpc.JobStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := a.status(&rpc.StatusParams{JobIDs: []string{id}}, "")
		if err != nil {
			t.Fatal(err)
		}
		if cond(st[0]) {
			return st[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: condition not met; last status %+v", id, st[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isFinished(s rpc.JobStatus) bool { return s.State == status.Finished }

func TestAsyncJobRunsDetachedAndFinishes(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	j := submit(t, a, "o1", "command", "run", map[string]any{"cmd": "echo first; sleep 1; echo second"})
	if j.State != status.Running || j.PID == 0 {
		t.Fatalf("after submit: state %s pid %d, want RUNNING with a runner pid", j.State, j.PID)
	}
	partial := waitState(t, a, j.ID, func(s rpc.JobStatus) bool { return s.State != status.Running })
	if partial.State != status.Partial || partial.Output != "first\n" {
		t.Fatalf("while running: state %s output %q, want PARTIAL with \"first\\n\"", partial.State, partial.Output)
	}
	done := waitState(t, a, j.ID, isFinished)
	if !done.OK {
		t.Fatalf("finished not ok: %+v", done.Error)
	}
	var res struct {
		Stdout   string `json:"stdout"`
		ExitCode int    `json:"exit_code"`
	}
	if err := json.Unmarshal(done.Result, &res); err != nil || res.Stdout != "first\nsecond\n" {
		t.Fatalf("result %s (%v), want stdout first\\nsecond\\n", done.Result, err)
	}
	// Reading on from the offset given while it ran returns the rest.
	st, err := a.status(&rpc.StatusParams{JobIDs: []string{j.ID}, FromOffset: partial.NextOffset}, "")
	if err != nil || st[0].Output != "second\n" {
		t.Fatalf("output from offset %d: %q, %v; want \"second\\n\"", partial.NextOffset, st[0].Output, err)
	}
}

func TestAsyncSubmitIsIdempotent(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	j1 := submit(t, a, "same-origin", "test", "ping", nil)
	j2, created, err := a.submit("tester", &rpc.SubmitParams{OriginJobID: "same-origin", Module: "test", Method: "ping"})
	if err != nil || created || j2.ID != j1.ID {
		t.Fatalf("second submit: job %s created %v err %v; want the same job %s, not created", j2.ID, created, err, j1.ID)
	}
	// Another caller with the same origin ID is another job.
	j3, created, err := a.submit("someone-else", &rpc.SubmitParams{OriginJobID: "same-origin", Module: "test", Method: "ping"})
	if err != nil || !created || j3.ID == j1.ID {
		t.Fatalf("other caller: job %s created %v err %v; want a new job", j3.ID, created, err)
	}
	waitState(t, a, j1.ID, isFinished)
	waitState(t, a, j3.ID, isFinished)
}

func TestAsyncSubmitChecksArgumentsFirst(t *testing.T) {
	dir := t.TempDir()
	a := newAsync(t, dir)
	defer a.Close()
	for _, tc := range []struct {
		module, method string
		args           map[string]any
		kind           status.Kind
	}{
		{"nosuch", "x", nil, status.KindUnknownModule},
		{"test", "nosuch", nil, status.KindUnknownMethod},
		{"test", "sleep", map[string]any{"seconds": "abc"}, status.KindBadArgs},
	} {
		_, _, err := a.submit("tester", &rpc.SubmitParams{OriginJobID: "o-" + tc.method, Module: tc.module, Method: tc.method, Args: tc.args})
		if status.KindOf(err) != tc.kind {
			t.Errorf("%s.%s: got %v, want kind %s", tc.module, tc.method, err, tc.kind)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "spool")); len(ents) != 0 {
		t.Errorf("rejected submits left %d spool entries", len(ents))
	}
}

func TestAsyncCancelKillsTheWholeProcessGroup(t *testing.T) {
	dir := t.TempDir()
	a := newAsync(t, dir)
	defer a.Close()
	pidFile := filepath.Join(dir, "child.pid")
	j := submit(t, a, "o1", "command", "run", map[string]any{"cmd": "sleep 60 & echo $! > " + pidFile + "; echo started; wait"})
	waitState(t, a, j.ID, func(s rpc.JobStatus) bool { return s.State == status.Partial })
	child := readPID(t, pidFile)
	if _, err := a.cancel(j.ID, "", ""); err != nil {
		t.Fatal(err)
	}
	done := waitState(t, a, j.ID, isFinished)
	if done.Error == nil || done.Error.Kind != status.KindCancelled {
		t.Fatalf("after cancel: %+v, want kind cancelled", done.Error)
	}
	waitGone(t, child)
}

func TestAsyncTimeoutKillsTheCommand(t *testing.T) {
	dir := t.TempDir()
	a := newAsync(t, dir)
	defer a.Close()
	pidFile := filepath.Join(dir, "child.pid")
	// 3 s: time for the runner to start and the shell to write its
	// child's pid on a loaded machine, before the timeout kills them.
	j, _, err := a.submit("tester", &rpc.SubmitParams{OriginJobID: "o1", Module: "command", Method: "run", TimeoutMS: 3000,
		Args: map[string]any{"cmd": "sleep 60 & echo $! > " + pidFile + "; wait"}})
	if err != nil {
		t.Fatal(err)
	}
	done := waitState(t, a, j.ID, isFinished)
	if done.Error == nil || done.Error.Kind != status.KindTimeout {
		t.Fatalf("got %+v, want kind timeout", done.Error)
	}
	waitGone(t, readPID(t, pidFile))
}

func TestAsyncRestartAdoptsIngestsAndLoses(t *testing.T) {
	dir := t.TempDir()
	a := newAsync(t, dir)
	running := submit(t, a, "running", "test", "sleep", map[string]any{"seconds": 1.5})
	quick := submit(t, a, "quick", "test", "ping", nil)
	doomed := submit(t, a, "doomed", "test", "sleep", map[string]any{"seconds": 30})
	// Stop the daemon's machinery before the quick job is ingested, so
	// that the next one finds its result file.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(dir, "spool", quick.ID, resultFile))
	waitFile(t, filepath.Join(dir, "spool", doomed.ID, pidFile))
	if err := syscall.Kill(doomed.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, doomed.PID)
	// The pid shows a zombie as soon as the runner's main thread is
	// gone; its lock goes with the last of its threads.
	waitRunnerGone(t, filepath.Join(dir, "spool", doomed.ID))

	b := newAsync(t, dir)
	defer b.Close()
	if j, _ := b.store.get(quick.ID); j.State != status.Finished || !j.OK {
		t.Errorf("quick job after restart: %s ok=%v, want FINISHED ok (ingested)", j.State, j.OK)
	}
	if j, _ := b.store.get(doomed.ID); j.State != status.Finished || j.Error == nil || j.Error.Kind != status.KindLost {
		t.Errorf("killed job after restart: %s %+v, want FINISHED lost", j.State, j.Error)
	}
	if j, _ := b.store.get(running.ID); j.State == status.Finished {
		t.Errorf("running job after restart: FINISHED %+v, want it adopted and still running", j.Error)
	}
	if st := waitState(t, b, running.ID, isFinished); !st.OK {
		t.Errorf("adopted job: %+v, want ok", st.Error)
	}
}

func TestAsyncStatusOfUnknownJobIsLost(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	st, err := a.status(&rpc.StatusParams{JobIDs: []string{"no-such-job"}}, "")
	if err != nil || st[0].State != status.Finished || st[0].Error == nil || st[0].Error.Kind != status.KindLost {
		t.Fatalf("got %+v, %v; want FINISHED lost", st, err)
	}
}

func TestAsyncRetention(t *testing.T) {
	dir := t.TempDir()
	a := newAsync(t, dir)
	defer a.Close()
	var ids []string
	for i := range 3 {
		j := submit(t, a, "o"+strconv.Itoa(i), "test", "ping", nil)
		waitState(t, a, j.ID, isFinished)
		ids = append(ids, j.ID)
	}
	if err := a.purge(time.Now().Add(-time.Hour), 1); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		_, err := os.Stat(filepath.Join(dir, "spool", id))
		_, getErr := a.store.get(id)
		kept := i == len(ids)-1
		if kept != (err == nil) || kept != (getErr == nil) {
			t.Errorf("job %d: spool err %v, store err %v; want kept=%v", i, err, getErr, kept)
		}
	}
}

func TestLongPollAnswersWhenTheJobEnds(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	j := submit(t, a, "o1", "test", "sleep", map[string]any{"seconds": 0.3})
	p := &rpc.StatusParams{JobIDs: []string{j.ID}, WaitMS: 10000, MaxOutput: -1}
	first, err := a.status(p, "")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	st, err := a.waitChange(context.Background(), p, "", first)
	if err != nil || st[0].State != status.Finished {
		t.Fatalf("long poll: %+v %v, want FINISHED", st, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("long poll took %s; want it to answer when the job ends", took)
	}
}

func readPID(t testing.TB, path string) int {
	t.Helper()
	waitFile(t, path)
	var pid int
	for range 100 {
		data, _ := os.ReadFile(path)
		if pid, _ = strconv.Atoi(strings.TrimSpace(string(data))); pid > 0 {
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no pid in %s", path)
	return 0
}

func waitFile(t testing.TB, path string) {
	t.Helper()
	for range 500 {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not appear", path)
}

// waitGone waits until pid no longer exists (or is a zombie).
func waitGone(t testing.TB, pid int) {
	t.Helper()
	for range 500 {
		if syscall.Kill(pid, 0) != nil || isZombie(pid) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	t.Fatalf("process %d still alive", pid)
}
