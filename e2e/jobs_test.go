//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// jobView is what the tests read of a job, as 'overlord job status -o
// json' prints it (docs/json-output.md).
type jobView struct {
	JobID      string               `json:"job_id"`
	State      string               `json:"state"`
	Module     string               `json:"module"`
	Method     string               `json:"method"`
	FinishedAt string               `json:"finished_at"`
	Minions    map[string]entryView `json:"minions"`
	Summary    summaryView          `json:"summary"`
}

// entryView is one minion's entry in a job.
type entryView struct {
	State       string          `json:"state"`
	OK          bool            `json:"ok"`
	MinionJobID string          `json:"minion_job_id"`
	Result      json.RawMessage `json:"result"`
	Error       *errorView      `json:"error"`
	// With --queue, and after job reconcile.
	QueuedSince          string     `json:"queued_since"`
	LastError            *errorView `json:"last_error"`
	Reconciled           bool       `json:"reconciled"`
	ErrorBeforeReconcile *errorView `json:"error_before_reconcile"`
}

// errorView is an error object.
type errorView struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// summaryView is a job's summary.
type summaryView struct {
	Total   int `json:"total"`
	OK      int `json:"ok"`
	Failed  int `json:"failed"`
	Pending int `json:"pending"`
}

// kind returns the entry's error kind, or "" if it has none.
func (e entryView) kind() string {
	if e.Error == nil {
		return ""
	}
	return e.Error.Kind
}

// stdout returns the stdout of a command.run result.
func (e entryView) stdout() string {
	var r struct {
		Stdout string `json:"stdout"`
	}
	_ = json.Unmarshal(e.Result, &r)
	return r.Stdout
}

// names returns the job's minions, sorted.
func (j jobView) names() []string {
	var ns []string
	for n := range j.Minions {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

// String is for failure messages.
func (j jobView) String() string {
	b, _ := json.MarshalIndent(j, "", "  ")
	return string(b)
}

// jobIDPattern is the shape of a job ID (a UUIDv7).
var jobIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// callAsync runs 'overlord call ARGS --async -o json' and returns the job
// ID. It checks that the command exits 0, printing {"job_id": ...,
// "state": "RUNNING"}. That it returns before the job ends, without
// touching the network, the tests show with commands that wait on a gate
// (TestAsyncFleet); how fast it returns is BenchmarkSubmitAsync's
// business.
func callAsync(t *testing.T, f *fleet, args ...string) string {
	t.Helper()
	cmd, stdout, stderr := overlordCmd(f, append(append([]string{"call"}, args...), "--async", "-o", "json")...)
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("call %s --async: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
	}
	var got map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("call --async -o json: %v\n%s", err, stdout)
	}
	id, _ := got["job_id"].(string)
	if !jobIDPattern.MatchString(id) || got["state"] != "RUNNING" || len(got) != 2 {
		t.Fatalf(`call --async -o json printed %s, want {"job_id": ID, "state": "RUNNING"}`, stdout)
	}
	return id
}

// jobStatus runs 'overlord job status ID FLAGS... -o json' and returns
// the job, the exit status and standard error.
func jobStatus(t *testing.T, f *fleet, id string, flags ...string) (jobView, int, string) {
	t.Helper()
	cmd, stdout, stderr := overlordCmd(f, append(append([]string{"job", "status", id}, flags...), "-o", "json")...)
	code := exitCode(t, cmd)
	var j jobView
	if err := json.Unmarshal(stdout.Bytes(), &j); err != nil {
		t.Fatalf("job status %s %s: exit %d, %v\n%s%s", id, strings.Join(flags, " "), code, err, stdout, stderr)
	}
	return j, code, stderr.String()
}

// waitJob runs 'job status' until cond holds of the job, for at most
// timeout, and returns the job.
func waitJob(t *testing.T, f *fleet, id string, timeout time.Duration, what string, cond func(jobView) bool) jobView {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j, _, _ := jobStatus(t, f, id)
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: not %s after %s:\n%s", id, what, timeout, j)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFinished runs 'job status --wait' and checks that the job is
// FINISHED, with exit status want.
func waitFinished(t *testing.T, f *fleet, id string, want int) jobView {
	t.Helper()
	j, code, stderr := jobStatus(t, f, id, "--wait", "--timeout", "60s")
	if j.State != "FINISHED" || code != want {
		t.Fatalf("job status %s --wait: exit %d, state %s; want %d, FINISHED\n%s\n%s", id, code, j.State, want, j, stderr)
	}
	return j
}

// jobList returns the jobs 'overlord job list -o json --limit 0' shows.
func jobList(t *testing.T, f *fleet) []jobView {
	t.Helper()
	out, err := f.overlord("job", "list", "--limit", "0", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var jobs []jobView
	if err := json.Unmarshal([]byte(out), &jobs); err != nil {
		t.Fatalf("job list -o json: %v\n%s", err, out)
	}
	return jobs
}

// listed returns the job with ID id in jobs.
func listed(jobs []jobView, id string) (jobView, bool) {
	for _, j := range jobs {
		if j.JobID == id {
			return j, true
		}
	}
	return jobView{}, false
}

// gate is a file that commands run by the minions wait for, so that a
// test decides when they go on instead of guessing with sleeps.
type gate string

func newGate(t *testing.T, name string) gate {
	return gate(filepath.Join(t.TempDir(), name))
}

// wait is a shell command that returns once the gate is open.
func (g gate) wait() string {
	return fmt.Sprintf("until [ -e %s ]; do sleep 0.05; done", shellQuote(string(g)))
}

// open opens the gate.
func (g gate) open(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(string(g), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
