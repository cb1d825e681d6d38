package cli_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// fixedJobs writes two jobs with fixed IDs, times and results into the
// harness's store, for golden output.
func fixedJobs(t *testing.T, h *harness) (command, echo string) {
	t.Helper()
	s := jobs.New(filepath.Join(h.dir, overlord.DBFile), 0)
	created := time.Date(2026, 11, 21, 13, 0, 0, 0, time.UTC)
	finished := created.Add(2 * time.Second)

	write := func(rec *jobs.Record, results map[string]status.Result, state status.State, fin *time.Time) {
		t.Helper()
		var names []string
		for n := range results {
			names = append(names, n)
		}
		if err := s.CreateJob(rec, names); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(rec.ID, results, func(r *jobs.Record) error {
			r.State, r.FinishedAt = state, fin
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }

	cmd := &jobs.Record{ID: "01937a4e-0000-7000-8000-00000000c0de", Target: "web*", Module: "command", Method: "run",
		Args: map[string]any{"cmd": "uptime", "max_output": 1048576}, CreatedAt: created}
	write(cmd, map[string]status.Result{
		"web1": {State: status.Finished, OK: true, DurationMS: 12,
			Result: raw(`{"stdout":" 13:00:01 up 3 days,  2 users\n","stderr":"","exit_code":0,"duration_ms":9}`)},
		"web2": {State: status.Finished, DurationMS: 5003,
			Error: &status.Error{Kind: status.KindUnreachable, Message: "dial tcp 10.0.0.2:51234: connect: connection refused"}},
		"web3": {State: status.Finished, DurationMS: 20,
			Result: raw(`{"stdout":"","stderr":"sh: 1: uptime: not found\n","exit_code":127,"duration_ms":3}`),
			Error:  &status.Error{Kind: status.KindModuleError, Message: "command exit status 127"}},
		"web4": {State: status.Finished, OK: true, DurationMS: 40,
			Result: raw(`{"stdout":"line 1\nline 2\n","stderr":"warning: slow\n","exit_code":0,"duration_ms":30,"truncated":true}`)},
	}, status.Finished, &finished)

	// The echo job is async and still running: hold its driver lock as a
	// live driver would, so that job status neither starts a driver nor
	// settles the job.
	holdDriverLock(t, h.dir, "01937a4e-0000-7000-8000-0000000ec401")
	ech := &jobs.Record{ID: "01937a4e-0000-7000-8000-0000000ec401", Async: true, Target: "@db,!db3", Module: "test", Method: "echo",
		Args: map[string]any{"message": map[string]any{"a": []any{1, "two"}}}, CreatedAt: created.Add(time.Minute)}
	write(ech, map[string]status.Result{
		"db1":   {State: status.Finished, OK: true, DurationMS: 1, Result: raw(`{"a":[1,"two"]}`)},
		"db2":   {State: status.Finished, OK: true, DurationMS: 2, Result: raw(`"just a string"`)},
		"db4":   {State: status.Partial, MinionJobID: "01937a4e-1111-7000-8000-000000000001"},
		"db5":   {State: status.Finished, Error: &status.Error{Kind: status.KindInternal, Message: "test.echo panicked: boom\ngoroutine 1 [running]:\n..."}},
		"db6":   {State: status.Finished, Result: raw(`[1,2]`), Error: &status.Error{Kind: status.KindTimeout, Message: "no answer in time"}},
		"db7":   {State: status.Finished, Result: raw(`42`), Error: &status.Error{Kind: status.KindModuleError, Message: "failed"}},
		"db8":   {State: status.Running},
		"db9":   {State: status.Finished, OK: true, DurationMS: 3, Result: raw(`null`)},
		"db10":  {State: status.Finished, OK: true},
		"db-11": {State: status.Finished, OK: true, Result: raw(`{"stdout":"no exit code here"}`)},
	}, status.Partial, nil)
	return cmd.ID, ech.ID
}

// TestJobStatusGolden renders two fixed jobs in every output format and
// compares with testdata/*.golden; run with -update to rewrite them.
func TestJobStatusGolden(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	cmdID, echoID := fixedJobs(t, h)
	for _, job := range []struct {
		name, id string
		code     int
	}{{"command", cmdID, 1}, {"echo", echoID, 1}} {
		for _, format := range []string{"text", "json", "ndjson", "yaml"} {
			t.Run(job.name+"/"+format, func(t *testing.T) {
				r := h.run("job", "status", job.id, "-o", format)
				if r.code != job.code {
					t.Errorf("exit %d, want %d (%v)", r.code, job.code, r.err)
				}
				golden := filepath.Join("testdata", "job_status_"+job.name+"."+format+".golden")
				if *update {
					if err := os.WriteFile(golden, []byte(r.stdout), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if !bytes.Equal([]byte(r.stdout), want) {
					t.Errorf("output differs from %s (run with -update if the change is meant):\n--- got\n%s\n--- want\n%s", golden, r.stdout, want)
				}
				if format == "json" && !json.Valid([]byte(r.stdout)) {
					t.Error("json output is not valid JSON")
				}
				if format == "ndjson" {
					for _, line := range strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n") {
						if !json.Valid([]byte(line)) {
							t.Errorf("ndjson line is not JSON: %s", line)
						}
					}
				}
			})
		}
	}
}

// `job status` prints the same document for a job as `call` did.
func TestJobStatusMatchesCall(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addMinion("web1")
	h.addDeadMinion("web2")
	r := h.run("call", "*", "command.run", "echo hi", "-o", "json")
	var called status.Job
	if err := json.Unmarshal([]byte(r.stdout), &called); err != nil {
		t.Fatal(err)
	}
	r = h.run("job", "status", called.JobID, "-o", "json")
	var stored status.Job
	if err := json.Unmarshal([]byte(r.stdout), &stored); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(called)
	b, _ := json.Marshal(stored)
	if !bytes.Equal(a, b) {
		t.Errorf("call printed\n%s\njob status prints\n%s", a, b)
	}
}

// A stored entry that is finished and not ok but carries no error object
// (as another writer of overlord.db might store) still renders.
func TestJobStatusFailedWithoutError(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	s := jobs.New(filepath.Join(h.dir, overlord.DBFile), 0)
	rec := &jobs.Record{ID: "0193-no-error", Target: "x", Module: "test", Method: "ping"}
	if err := s.CreateJob(rec, []string{"x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(rec.ID, map[string]status.Result{"x": {State: status.Finished}}, nil); err != nil {
		t.Fatal(err)
	}
	var r result
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("`overlord job status` panics (%v) rendering an entry {\"state\":\"FINISHED\",\"ok\":false} "+
					"with no \"error\" object", p)
			}
		}()
		r = h.run("job", "status", rec.ID)
	}()
	if r.code != 1 || !strings.Contains(r.stdout, "x:") {
		t.Errorf("exit %d\n%s", r.code, r.stdout)
	}
}

// holdDriverLock takes job id's driver lock until the test ends.
func holdDriverLock(t *testing.T, stateDir, id string) {
	t.Helper()
	dir := filepath.Join(stateDir, "drivers")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, id+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
}
