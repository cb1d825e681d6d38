//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Rolling batches (--batch, --batch-wait, --max-fail) with the real
// binaries. The minions' commands append "NAME start" and "NAME end" to
// one file (O_APPEND: whole lines, in the order they happened), so the
// file shows whether batches overlapped, without looking at a clock.

// batchLog is a command that logs its start and end to log, naming the
// minion it runs on by its working directory (the minion's state
// directory), with body run in a subshell in between.
func batchLog(log, body string) string {
	q := shellQuote(log)
	return fmt.Sprintf(`echo "$PWD start" >> %s; (%s); rc=$?; echo "$PWD end" >> %s; exit $rc`, q, body, q)
}

// batchEvents reads a batchLog file as "NAME start" / "NAME end" lines,
// in order.
func batchEvents(t *testing.T, f *fleet, log string) []string {
	t.Helper()
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range nonEmptyLines(string(data)) {
		dir, what, _ := strings.Cut(line, " ")
		name := ""
		for _, n := range f.names {
			m := mustMinion(t, f, n)
			if dir == m.dir || strings.HasPrefix(dir, m.dir+string(filepath.Separator)) {
				name = n
			}
		}
		if name == "" {
			t.Fatalf("%s: a line from no minion of the fleet: %q", log, line)
		}
		out = append(out, name+" "+what)
	}
	return out
}

// checkBatches checks that events show the batches one after the other:
// every minion of batch k ended before any minion of batch k+1 started,
// and each minion ran once.
func checkBatches(t *testing.T, events []string, batches [][]string) {
	t.Helper()
	batchOf := map[string]int{}
	for k, b := range batches {
		for _, n := range b {
			batchOf[n] = k
		}
	}
	started, ended := map[string]int{}, map[string]int{}
	for i, e := range events {
		name, what, _ := strings.Cut(e, " ")
		k, ok := batchOf[name]
		if !ok {
			t.Fatalf("event %d %q: %s is in no batch that should have run\n%s", i, e, name, strings.Join(events, "\n"))
		}
		switch what {
		case "start":
			started[name]++
			// Every minion of the batches before has ended.
			for _, prev := range batches[:k] {
				for _, p := range prev {
					if ended[p] == 0 {
						t.Fatalf("%s (batch %d) started before %s (batch %d) ended:\n%s", name, k+1, p, batchOf[p]+1, strings.Join(events, "\n"))
					}
				}
			}
		case "end":
			ended[name]++
		}
	}
	for n := range batchOf {
		if started[n] != 1 || ended[n] != 1 {
			t.Errorf("%s started %d and ended %d times, want once each:\n%s", n, started[n], ended[n], strings.Join(events, "\n"))
		}
	}
}

// batchNumbers returns each minion's batch number in a job document.
func batchNumbers(t *testing.T, doc []byte) map[string]int {
	t.Helper()
	var j struct {
		Minions map[string]struct {
			Batch int `json:"batch"`
		} `json:"minions"`
	}
	if err := json.Unmarshal(doc, &j); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	out := map[string]int{}
	for n, e := range j.Minions {
		out[n] = e.Batch
	}
	return out
}

func TestBatchSync(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2", "web3", "web4", "web5")
	log := filepath.Join(t.TempDir(), "events")
	// The sleep only widens the window in which overlapping batches
	// would show; the test waits for nothing with it.
	cmd, stdout, stderr := overlordCmd(f, "call", "web*", "command.run", batchLog(log, "sleep 0.2"), "--batch", "2", "-o", "json")
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("call --batch 2: exit %d\n%s%s", code, stdout, stderr)
	}
	checkBatches(t, batchEvents(t, f, log), [][]string{{"web1", "web2"}, {"web3", "web4"}, {"web5"}})
	want := map[string]int{"web1": 1, "web2": 1, "web3": 2, "web4": 2, "web5": 3}
	if got := batchNumbers(t, stdout.Bytes()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("batch numbers %v, want %v", got, want)
	}
	var j jobView
	if err := json.Unmarshal(stdout.Bytes(), &j); err != nil {
		t.Fatal(err)
	}
	if j.State != "FINISHED" || j.Summary != (summaryView{Total: 5, OK: 5}) {
		t.Errorf("job %s", j)
	}
	// job status shows the same batches.
	again, _, _ := jobStatus(t, f, j.JobID)
	if again.Summary != j.Summary {
		t.Errorf("job status %s", again)
	}
	cmd, st, _ := overlordCmd(f, "job", "status", j.JobID, "-o", "json")
	if exitCode(t, cmd) != 0 || fmt.Sprint(batchNumbers(t, st.Bytes())) != fmt.Sprint(want) {
		t.Errorf("job status: batch numbers %v, want %v", batchNumbers(t, st.Bytes()), want)
	}

	// 50% of 5 minions is 2.5, rounded up: 3 a batch.
	log2 := filepath.Join(t.TempDir(), "events")
	cmd, stdout, stderr = overlordCmd(f, "call", "web*", "command.run", batchLog(log2, "true"), "--batch", "50%", "-o", "ndjson")
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("call --batch 50%%: exit %d\n%s%s", code, stdout, stderr)
	}
	checkBatches(t, batchEvents(t, f, log2), [][]string{{"web1", "web2", "web3"}, {"web4", "web5"}})
	lines := nonEmptyLines(stdout.String())
	if len(lines) != 6 {
		t.Fatalf("ndjson: %d lines, want 5 results and a summary:\n%s", len(lines), stdout)
	}
	for _, l := range lines[:5] {
		var r struct {
			Minion string `json:"minion"`
			Batch  int    `json:"batch"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Batch != map[bool]int{true: 1, false: 2}[r.Minion <= "web3"] {
			t.Errorf("ndjson result line %s: want batch 1 for web1-3, 2 for web4-5 (%v)", l, err)
		}
	}
}

// --max-fail 0: a failure in batch 1 and no other batch starts; the
// minions never started are FINISHED skipped, and the call exits 1.
func TestBatchMaxFail(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2", "web3", "web4", "web5")
	log := filepath.Join(t.TempDir(), "events")
	body := `case "$PWD" in */web1) exit 3;; esac`
	cmd, stdout, stderr := overlordCmd(f, "call", "web*", "command.run", batchLog(log, body), "--batch", "2", "--max-fail", "0", "-o", "json")
	if code := exitCode(t, cmd); code != 1 {
		t.Fatalf("call --batch 2 --max-fail 0: exit %d, want 1\n%s%s", code, stdout, stderr)
	}
	checkBatches(t, batchEvents(t, f, log), [][]string{{"web1", "web2"}})
	var j jobView
	if err := json.Unmarshal(stdout.Bytes(), &j); err != nil {
		t.Fatal(err)
	}
	if k := j.Minions["web1"].kind(); k != "module_error" {
		t.Errorf("web1: kind %q, want module_error", k)
	}
	if !j.Minions["web2"].OK {
		t.Errorf("web2: %+v, want ok", j.Minions["web2"])
	}
	for _, n := range []string{"web3", "web4", "web5"} {
		e := j.Minions[n]
		if e.State != "FINISHED" || e.OK || e.kind() != "skipped" || !strings.Contains(e.Error.Message, "more than --max-fail 0") {
			t.Errorf("%s: %+v, want FINISHED skipped saying why", n, e)
		}
	}
	if want := map[string]int{"web1": 1, "web2": 1, "web3": 2, "web4": 2, "web5": 3}; fmt.Sprint(batchNumbers(t, stdout.Bytes())) != fmt.Sprint(want) {
		t.Errorf("batch numbers %v, want %v", batchNumbers(t, stdout.Bytes()), want)
	}
	var sum struct {
		Summary map[string]int `json:"summary"`
	}
	_ = json.Unmarshal(stdout.Bytes(), &sum)
	if want := map[string]int{"total": 5, "ok": 1, "failed": 4, "pending": 0, "skipped": 3}; fmt.Sprint(sum.Summary) != fmt.Sprint(want) {
		t.Errorf("summary %v, want %v", sum.Summary, want)
	}

	// Text says so too, and the exit status is 1 there as well.
	cmd, stdout, _ = overlordCmd(f, "job", "status", j.JobID)
	if code := exitCode(t, cmd); code != 1 || !strings.Contains(stdout.String(), "web5: ERROR skipped: not started: 1 minion failed, more than --max-fail 0") {
		t.Errorf("job status: exit %d\n%s", code, stdout)
	}
	// The summary line tells the skipped from the minions that failed.
	if want := "5 minions: 1 ok, 4 failed (3 skipped) (job " + j.JobID; !strings.Contains(stdout.String(), want) {
		t.Errorf("job status summary:\n%s\nwant %q", stdout, want)
	}
}

// An async batched job runs its batches one after the other, driven by
// its detached driver; --max-fail works there as in a synchronous call.
func TestBatchAsync(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2", "web3", "web4")
	log := filepath.Join(t.TempDir(), "events")
	id := callAsync(t, f, "web*", "command.run", batchLog(log, "sleep 0.2"), "--batch", "2")
	j := waitFinished(t, f, id, 0)
	checkBatches(t, batchEvents(t, f, log), [][]string{{"web1", "web2"}, {"web3", "web4"}})
	if j.Summary != (summaryView{Total: 4, OK: 4}) {
		t.Errorf("job %s", j)
	}
	cmd, st, _ := overlordCmd(f, "job", "status", id, "-o", "json")
	exitCode(t, cmd)
	if want := map[string]int{"web1": 1, "web2": 1, "web3": 2, "web4": 2}; fmt.Sprint(batchNumbers(t, st.Bytes())) != fmt.Sprint(want) {
		t.Errorf("batch numbers %v, want %v", batchNumbers(t, st.Bytes()), want)
	}

	log2 := filepath.Join(t.TempDir(), "events")
	id = callAsync(t, f, "web*", "command.run", batchLog(log2, `case "$PWD" in */web2|*/web2/*) exit 3;; esac`), "--batch", "1", "--max-fail", "0")
	j = waitFinished(t, f, id, 1)
	checkBatches(t, batchEvents(t, f, log2), [][]string{{"web1"}, {"web2"}})
	if !j.Minions["web1"].OK || j.Minions["web2"].kind() != "module_error" || j.Minions["web3"].kind() != "skipped" || j.Minions["web4"].kind() != "skipped" {
		t.Errorf("job %s", j)
	}
	if j.Minions["web3"].MinionJobID != "" {
		t.Errorf("web3 was skipped but has a minion job: %+v", j.Minions["web3"])
	}
}

// killDriver kills job id's driver with SIGKILL and waits until it is
// gone.
func killDriver(t *testing.T, f *fleet, id string) {
	t.Helper()
	d := drivers(f.stateDir, id)
	if len(d) != 1 {
		t.Fatalf("drivers of job %s: %v, want one", id, d)
	}
	if err := syscall.Kill(d[0].pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := waitGone(readyTimeout, d[0].pid); err != nil {
		t.Fatal(err)
	}
}

// A batched async job whose driver is killed while it waits between
// batches (--batch-wait) carries on from its record after 'job status':
// the batches done are not run again, the next ones run in order.
func TestBatchAsyncDriverKilledBetweenBatches(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2", "web3", "web4")
	log := filepath.Join(t.TempDir(), "events")
	id := callAsync(t, f, "web*", "command.run", batchLog(log, "true"), "--batch", "2", "--batch-wait", "3s")
	// The driver says when it starts waiting after batch 1.
	driverLog := filepath.Join(f.stateDir, "drivers", id+".log")
	deadline := time.Now().Add(readyTimeout)
	for {
		data, _ := os.ReadFile(driverLog)
		if strings.Contains(string(data), "waiting before the next batch") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the driver never waited between batches:\n%s", data)
		}
		time.Sleep(pollEvery)
	}
	killDriver(t, f, id)
	checkBatches(t, batchEvents(t, f, log), [][]string{{"web1", "web2"}})

	j, code, stderr := jobStatus(t, f, id, "--wait", "--timeout", "60s")
	if code != 0 || j.State != "FINISHED" || j.Summary != (summaryView{Total: 4, OK: 4}) {
		t.Fatalf("job status --wait: exit %d\n%s\n%s", code, j, stderr)
	}
	if !strings.Contains(stderr, "job "+id+" had lost its driver; a new one carries it on") {
		t.Errorf("job status --wait: stderr %q, want it to say the driver was replaced", stderr)
	}
	checkBatches(t, batchEvents(t, f, log), [][]string{{"web1", "web2"}, {"web3", "web4"}})
}

// A batched async job whose driver is killed while a batch runs: the new
// driver waits for that batch (its minion jobs, not new ones) and goes on
// with the next.
func TestBatchAsyncDriverKilledMidBatch(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2", "web3")
	log := filepath.Join(t.TempDir(), "events")
	g := newGate(t, "go")
	id := callAsync(t, f, "web*", "command.run", batchLog(log, g.wait()), "--batch", "1")
	waitLines(t, log, 1) // web1 started
	killDriver(t, f, id)

	wait, stdout, stderr := overlordCmd(f, "job", "status", id, "--wait", "--timeout", "60s", "-o", "json")
	if err := wait.Start(); err != nil {
		t.Fatal(err)
	}
	waitDone := make(chan error, 1)
	go func() { waitDone <- wait.Wait() }()
	deadline := time.Now().Add(readyTimeout)
	for len(drivers(f.stateDir, id)) == 0 {
		if time.Now().After(deadline) {
			_ = wait.Process.Kill()
			<-waitDone
			t.Fatalf("no new driver for job %s after 'job status --wait' started", id)
		}
		time.Sleep(pollEvery)
	}
	g.open(t)
	select {
	case err := <-waitDone:
		if err != nil {
			t.Fatalf("job status --wait: %v\n%s%s", err, stdout, stderr)
		}
	case <-time.After(90 * time.Second):
		_ = wait.Process.Kill()
		<-waitDone
		t.Fatal("job status --wait still waiting after 90s")
	}
	var j jobView
	if err := json.Unmarshal(stdout.Bytes(), &j); err != nil {
		t.Fatal(err)
	}
	if j.State != "FINISHED" || j.Summary != (summaryView{Total: 3, OK: 3}) {
		t.Errorf("job %s", j)
	}
	checkBatches(t, batchEvents(t, f, log), [][]string{{"web1"}, {"web2"}, {"web3"}})
	out, err := f.run("minion", "--state-dir", mustMinion(t, f, "web1").dir, "job", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var mjobs []struct {
		Origin string `json:"origin_job_id"`
	}
	if err := json.Unmarshal([]byte(out), &mjobs); err != nil {
		t.Fatalf("minion job list --json: %v\n%s", err, out)
	}
	if len(mjobs) != 1 || mjobs[0].Origin != id {
		t.Errorf("web1's jobs: %s; want one, of job %s (a new driver submits again to the same minion job)", out, id)
	}
}

// job cancel of a batched job cancels the batch running and every batch
// not started.
func TestBatchAsyncCancel(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2", "web3")
	log := filepath.Join(t.TempDir(), "events")
	g := newGate(t, "never")
	id := callAsync(t, f, "web*", "command.run", batchLog(log, g.wait()), "--batch", "1")
	waitLines(t, log, 1)
	if out, err := f.overlord("job", "cancel", id); err != nil {
		t.Fatalf("job cancel: %v\n%s", err, out)
	}
	j := waitFinished(t, f, id, 1)
	for _, n := range []string{"web1", "web2", "web3"} {
		if k := j.Minions[n].kind(); k != "cancelled" {
			t.Errorf("%s: kind %q, want cancelled\n%s", n, k, j)
		}
	}
	if j.Minions["web2"].MinionJobID != "" || j.Minions["web3"].MinionJobID != "" {
		t.Errorf("a batch not started reached its minions:\n%s", j)
	}
	for _, e := range batchEvents(t, f, log) {
		if !strings.HasPrefix(e, "web1 ") {
			t.Errorf("%s ran after the cancel", e)
		}
	}
}

// cp --batch copies a batch of minions at a time, each entry with its
// batch number.
func TestBatchCopy(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2", "web3")
	src := filepath.Join(t.TempDir(), "app.conf")
	if err := os.WriteFile(src, []byte("listen 80\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "app.conf")
	cmd, stdout, stderr := overlordCmd(f, "cp", src, "web*:"+dest, "--batch", "2", "-o", "json")
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("cp --batch 2: exit %d\n%s%s", code, stdout, stderr)
	}
	if want := map[string]int{"web1": 1, "web2": 1, "web3": 2}; fmt.Sprint(batchNumbers(t, stdout.Bytes())) != fmt.Sprint(want) {
		t.Errorf("batch numbers %v, want %v", batchNumbers(t, stdout.Bytes()), want)
	}
	if data, err := os.ReadFile(dest); err != nil || string(data) != "listen 80\n" {
		t.Errorf("copied file: %q, %v", data, err)
	}
}

// A synchronous batched call whose wait (--timeout) ends during a batch
// exits 4, and the job goes on detached: the batch running finishes on
// its minions, and the driver runs the batches left, in order.
func TestBatchSyncOutlivesItsWait(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2", "web3")
	log := filepath.Join(t.TempDir(), "events")
	g := newGate(t, "go")
	body := fmt.Sprintf(`case "$PWD" in */web1) %s;; esac`, g.wait())
	cmd, stdout, stderr := overlordCmd(f, "call", "web*", "command.run", batchLog(log, body), "--batch", "1", "--timeout", "1s", "-o", "json")
	if code := exitCode(t, cmd); code != 4 {
		t.Fatalf("call --batch 1 --timeout 1s with batch 1 blocked: exit %d, want 4\n%s%s", code, stdout, stderr)
	}
	var j jobView
	if err := json.Unmarshal(stdout.Bytes(), &j); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	for _, n := range []string{"web1", "web2", "web3"} {
		if j.Minions[n].State == "FINISHED" {
			t.Errorf("%s finished before the wait ended: %+v", n, j.Minions[n])
		}
	}
	g.open(t)
	done := waitFinished(t, f, j.JobID, 0)
	if done.Summary != (summaryView{Total: 3, OK: 3}) {
		t.Errorf("job %s", done)
	}
	checkBatches(t, batchEvents(t, f, log), [][]string{{"web1"}, {"web2"}, {"web3"}})
}

// Ctrl-C during a synchronous batched call stops the rollout: the batch
// running goes on detached, the batches not started end cancelled.
func TestBatchSyncInterrupted(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2", "web3")
	log := filepath.Join(t.TempDir(), "events")
	g := newGate(t, "go")
	cmd, stdout, stderr := overlordCmd(f, "call", "web*", "command.run", batchLog(log, g.wait()), "--batch", "1", "-o", "json")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitLines(t, log, 1) // web1 runs
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	code, err := runCodeStarted(cmd)
	if err != nil || code != 4 {
		t.Fatalf("call interrupted: exit %d (%v), want 4\n%s%s", code, err, stdout, stderr)
	}
	var j jobView
	if err := json.Unmarshal(stdout.Bytes(), &j); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	g.open(t)
	done := waitFinished(t, f, j.JobID, 1)
	if !done.Minions["web1"].OK {
		t.Errorf("web1 (the batch running at Ctrl-C) did not finish ok:\n%s", done)
	}
	for _, n := range []string{"web2", "web3"} {
		if k := done.Minions[n].kind(); k != "cancelled" {
			t.Errorf("%s: kind %q, want cancelled\n%s", n, k, done)
		}
	}
	checkBatches(t, batchEvents(t, f, log), [][]string{{"web1"}})
}

// runCodeStarted waits for a started command and returns its exit status.
func runCodeStarted(cmd *exec.Cmd) (int, error) {
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok && ee.Exited() {
		return ee.ExitCode(), nil
	}
	return 0, err
}

// TestBatchSyncCallKilled: a synchronous batched call killed (kill -9)
// during its first batch is carried on by the next 'job status': the
// first batch's call is adopted, the batches it never sent are submitted
// (the call recorded them as unsent), and every minion runs once.
func TestBatchSyncCallKilled(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2", "web3")
	// Each minion runs the command in its state directory.
	call, _, _ := overlordCmd(f, "call", "*", "command.run", "--batch", "1",
		"echo run >> runs; while [ ! -e gate ]; do sleep 0.05; done; echo finished")
	if err := call.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = call.Wait(); close(done) }()
	defer func() { _ = call.Process.Kill(); <-done }()
	waitFile(t, filepath.Join(mustMinion(t, f, "web1").dir, "runs"))
	jobs := jobList(t, f)
	if len(jobs) != 1 {
		t.Fatalf("job list: %d jobs, want 1", len(jobs))
	}
	id := jobs[0].JobID
	_ = call.Process.Signal(syscall.SIGKILL)
	<-done
	for _, n := range []string{"web1", "web2", "web3"} {
		if err := os.WriteFile(filepath.Join(mustMinion(t, f, n).dir, "gate"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.overlord("job", "status", id); err == nil {
		t.Error("job status of a dead call's open job exits 0")
	}
	st, stdout, stderr := overlordCmd(f, "job", "status", id, "--wait", "--timeout", "60s", "-o", "json")
	if code := exitCode(t, st); code != 0 {
		t.Fatalf("job status --wait: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var job struct {
		State   string                    `json:"state"`
		Summary struct{ OK, Pending int } `json:"summary"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &job); err != nil || job.State != "FINISHED" || job.Summary.OK != 3 {
		t.Fatalf("job: %v %+v\n%s", err, job, stdout)
	}
	for _, n := range []string{"web1", "web2", "web3"} {
		if runs, _ := os.ReadFile(filepath.Join(mustMinion(t, f, n).dir, "runs")); string(runs) != "run\n" {
			t.Errorf("%s ran the command %q times, want once", n, runs)
		}
	}
}
