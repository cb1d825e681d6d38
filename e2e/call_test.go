//go:build linux

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNDJSONStreams: with -o ndjson each minion's line is printed as its
// result arrives, not when the slowest minion is done.
func TestNDJSONStreams(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "fast", "slow")
	// Each minion runs in its state directory, named after it.
	cmd, _, stderr := overlordCmd(f, "call", "*", "command.run",
		`case "$PWD" in */slow) sleep 2;; esac; echo done`, "-o", "ndjson")
	cmd.Stdout = nil
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	var firstAt time.Duration
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if len(lines) == 0 {
			firstAt = time.Since(start)
		}
		lines = append(lines, sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	total := time.Since(start)
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 2 results and a summary:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	var first struct {
		Type   string `json:"type"`
		Minion string `json:"minion"`
		OK     bool   `json:"ok"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first.Type != "result" || first.Minion != "fast" || !first.OK {
		t.Errorf("first line %s, want fast's result", lines[0])
	}
	if total < 2*time.Second {
		t.Fatalf("the call took %s; slow should have slept 2s", total)
	}
	if firstAt > total-time.Second {
		t.Errorf("fast's line came after %s, the call ended after %s: not streamed", firstAt, total)
	}
}

// TestForks: --forks bounds how many minions are called at once. How many
// calls overlapped is read from the minions' logs (each logs a call when
// it ends, with its duration), which does not depend on how loaded the
// machine is.
func TestForks(t *testing.T) {
	t.Parallel()
	names := []string{"web1", "web2", "web3", "web4", "web5", "web6"}
	// Race-built: the CLI's fan-out, and minions answering calls at once.
	f := startRaceFleet(t, names...)
	run := func(forks int) (took time.Duration, overlap int) {
		t.Helper()
		offsets := map[string]int64{}
		for _, n := range names {
			offsets[n] = logSize(mustMinion(t, f, n).p)
		}
		cmd, stdout, stderr := overlordCmd(f, "call", "*", "test.sleep", "0.5", "--forks", fmt.Sprint(forks))
		start := time.Now()
		if code := exitCode(t, cmd); code != 0 {
			t.Fatalf("--forks %d: exit %d\n%s%s", forks, code, stdout, stderr)
		}
		took = time.Since(start)
		if !strings.Contains(stdout.String(), "6 minions: 6 ok, 0 failed") {
			t.Errorf("--forks %d:\n%s", forks, stdout)
		}
		var spans [][2]time.Time
		for _, n := range names {
			m := mustMinion(t, f, n)
			waitLog(t, m.p, offsets[n], "method=sleep")
			spans = append(spans, callSpans(t, m, offsets[n])...)
		}
		if len(spans) != len(names) {
			t.Fatalf("--forks %d: %d calls in the minions' logs, want %d", forks, len(spans), len(names))
		}
		return took, maxOverlap(spans)
	}

	took, overlap := run(2)
	t.Logf("--forks 2: %s, at most %d calls at once", took, overlap)
	if overlap > 2 {
		t.Errorf("--forks 2: %d calls at once", overlap)
	}
	if took < 1500*time.Millisecond { // three rounds of two
		t.Errorf("--forks 2: 6 sleeps of 0.5s took %s, want at least 1.5s", took)
	}
	took, overlap = run(6)
	t.Logf("--forks 6: %s, at most %d calls at once", took, overlap)
	if overlap <= 2 {
		t.Errorf("--forks 6: at most %d calls at once, want more than 2", overlap)
	}
}

// callSpans returns when the calls a minion logged after byte offset from
// ran, from each log line's time (the end) and its duration.
func callSpans(t *testing.T, m *minionProc, from int64) [][2]time.Time {
	t.Helper()
	data, err := os.ReadFile(m.logPath)
	if err != nil {
		t.Fatal(err)
	}
	var spans [][2]time.Time
	for _, line := range strings.Split(string(data[from:]), "\n") {
		if !strings.Contains(line, " msg=call ") {
			continue
		}
		var (
			end time.Time
			ms  int64 = -1
		)
		for _, field := range strings.Fields(line) {
			k, v, _ := strings.Cut(field, "=")
			switch k {
			case "time":
				end, err = time.Parse(time.RFC3339Nano, v)
				if err != nil {
					t.Fatalf("%s: %v", line, err)
				}
			case "ms":
				fmt.Sscan(v, &ms)
			}
		}
		if end.IsZero() || ms < 0 {
			t.Fatalf("cannot read a call's time and duration from %q", line)
		}
		spans = append(spans, [2]time.Time{end.Add(-time.Duration(ms) * time.Millisecond), end})
	}
	return spans
}

// maxOverlap returns the most spans that overlap by more than a few
// milliseconds (log times are to the millisecond).
func maxOverlap(spans [][2]time.Time) int {
	const slack = 20 * time.Millisecond
	best := 0
	for _, s := range spans {
		at := s[0].Add(slack) // just after s starts
		n := 0
		for _, o := range spans {
			if !o[0].Add(slack).After(at) && o[1].Add(-slack).After(at) {
				n++
			}
		}
		best = max(best, n)
	}
	return best
}

// TestDeadCallJob: a synchronous call whose overlord process dies (kill
// -9, OOM, reboot) leaves its job in overlord.db, and its calls running
// on the minions.
//
// The job must not stay RUNNING for ever ("Nothing stays RUNNING
// forever"): 'overlord job status' sees that no process holds it and
// starts a driver, which adopts what the minions kept of the call and
// records their results; nothing runs twice. While the call is in
// progress, 'job status' does not exit 0, which would mean "every minion
// ok".
func TestDeadCallJob(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2")
	// Each minion runs the command in its state directory; it waits for
	// a file the test writes.
	call, _, _ := overlordCmd(f, "call", "*", "command.run", "echo run >> runs; while [ ! -e gate ]; do sleep 0.05; done; echo finished")
	if err := call.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = call.Wait(); close(done) }()
	defer func() { _ = call.Process.Kill(); <-done }()
	for _, n := range []string{"web1", "web2"} {
		waitFile(t, filepath.Join(mustMinion(t, f, n).dir, "runs"))
	}
	out, err := f.overlord("job", "list", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var jobs []struct {
		JobID string `json:"job_id"`
		State string `json:"state"`
	}
	if err := json.Unmarshal([]byte(out), &jobs); err != nil || len(jobs) != 1 {
		t.Fatalf("job list: %v\n%s", err, out)
	}
	id := jobs[0].JobID

	// In progress: nothing is known yet, so "every minion ok" is wrong.
	st, _, _ := overlordCmd(f, "job", "status", id)
	if code := exitCode(t, st); code == 0 {
		t.Errorf("job status of a call in progress exits 0 (every minion ok)")
	}

	_ = call.Process.Signal(syscall.SIGKILL)
	<-done
	// The minions notice the caller is gone and keep the work as jobs.
	for _, n := range []string{"web1", "web2"} {
		waitLog(t, mustMinion(t, f, n).p, 0, "call detached")
	}
	// job status finds the job without a driver, and starts one.
	st, _, stderr := overlordCmd(f, "job", "status", id)
	if code := exitCode(t, st); code != 4 || !strings.Contains(stderr.String(), "a new one carries it on") {
		t.Errorf("job status of a dead call: exit %d, stderr %q; want 4 and a new driver", code, stderr)
	}
	for _, n := range []string{"web1", "web2"} {
		if err := os.WriteFile(filepath.Join(mustMinion(t, f, n).dir, "gate"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st, stdout, _ := overlordCmd(f, "job", "status", id, "--wait", "--timeout", "60s", "-o", "json")
	code := exitCode(t, st)
	var job struct {
		State   string                    `json:"state"`
		Summary struct{ OK, Pending int } `json:"summary"`
		Minions map[string]struct {
			Result struct{ Stdout string } `json:"result"`
		} `json:"minions"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &job); err != nil {
		t.Fatal(err)
	}
	if code != 0 || job.State != "FINISHED" || job.Summary.OK != 2 || job.Minions["web1"].Result.Stdout != "finished\n" {
		t.Errorf("job of a dead call: exit %d, %+v; want FINISHED, both ok", code, job)
	}
	for _, n := range []string{"web1", "web2"} {
		if runs, _ := os.ReadFile(filepath.Join(mustMinion(t, f, n).dir, "runs")); string(runs) != "run\n" {
			t.Errorf("%s ran the command %q times, want once", n, runs)
		}
	}
}
