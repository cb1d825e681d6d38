package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

// --queue is for async calls only: without --async it is a usage error
// saying so, and nothing is recorded.
func TestQueueNeedsAsync(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addDeadMinion("web1")
	script := filepath.Join(t.TempDir(), "script.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"call", "web1", "test.ping", "--queue"},
		{"script", "web1", script, "--queue"},
	} {
		r := h.run(args...)
		if r.code != status.ExitUsage || !strings.Contains(fmt.Sprint(r.err), "--queue needs --async") {
			t.Errorf("%s: exit %d, %v; want 2, --queue needs --async", strings.Join(args, " "), r.code, r.err)
		}
	}
	if r := h.run("job", "list", "-o", "json"); strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("jobs recorded: %s", r.stdout)
	}
}

// storeJob writes a job with the given entries and state into the
// harness's store.
func storeJob(t *testing.T, h *harness, state status.State, entries map[string]status.Result) string {
	t.Helper()
	s := jobs.New(filepath.Join(h.dir, overlord.DBFile), 0)
	rec := &jobs.Record{Target: "web*", Module: "test", Method: "ping", Async: true, Queue: true, Caller: "op"}
	var names []string
	for n := range entries {
		names = append(names, n)
	}
	if err := s.CreateJob(rec, names); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(rec.ID, entries, func(r *jobs.Record) error {
		r.State = state
		if state == status.Finished {
			now := time.Now().UTC()
			r.FinishedAt = &now
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return rec.ID
}

// A queued entry shows as such in text, and its fields in JSON.
func TestJobStatusQueued(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	since := time.Date(2026, 11, 21, 12, 1, 5, 0, time.Local)
	id := storeJob(t, h, status.Partial, map[string]status.Result{
		"web1": {State: status.Running, MinionJobID: "0193-minion-job"},
		"web3": {State: status.Running, QueuedSince: &since, LastError: status.Errorf(status.KindUnreachable, "dial tcp 10.0.0.3:7000: connect: connection refused")},
	})
	holdDriverLock(t, h.dir, id)
	r := h.run("job", "status", id)
	if want := "web3: queued since 12:01:05 (unreachable: dial tcp 10.0.0.3:7000: connect: connection refused)\n"; !strings.Contains(r.stdout, want) || r.code != status.ExitWaitTimeout {
		t.Errorf("exit %d, text\n%s\nwant the line %q", r.code, r.stdout, want)
	}
	r = h.run("job", "status", id, "-o", "json")
	for _, want := range []string{`"queued_since": "` + since.Format(time.RFC3339), `"last_error": {`, `"kind": "unreachable"`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("json lacks %s:\n%s", want, r.stdout)
		}
	}
}

// job reconcile prints the job as job status does, in every format, and
// exits as it does; a job not FINISHED is refused with exit 4.
func TestJobReconcile(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addDeadMinion("web2")
	id := storeJob(t, h, status.Finished, map[string]status.Result{
		"web1": {State: status.Finished, OK: true, Result: []byte(`"pong"`)},
		// Its minion is out of reach: the entry stays as it is.
		"web2": {State: status.Finished, MinionJobID: "0193-minion-job", Error: status.Errorf(status.KindUnreachable, "out of reach for 1m0s: connection refused")},
		"web3": {State: status.Finished, OK: true, Reconciled: true, ErrorBeforeReconcile: status.Errorf(status.KindTimeout, "job deadline passed"), Result: []byte(`"pong"`)},
	})
	for _, format := range []string{"text", "json", "ndjson", "yaml"} {
		got, want := h.run("job", "reconcile", id[:13], "-o", format), h.run("job", "status", id, "-o", format)
		if got.stdout != want.stdout || got.code != want.code || got.code != status.ExitFailed {
			t.Errorf("-o %s: job reconcile exit %d:\n%s\njob status exit %d:\n%s", format, got.code, got.stdout, want.code, want.stdout)
		}
		if !strings.Contains(got.stderr, "0 entries reconciled") {
			t.Errorf("-o %s: stderr %q", format, got.stderr)
		}
	}
	if r := h.run("job", "status", id); !strings.Contains(r.stdout, `web3: "pong" (reconciled; was timeout)`) {
		t.Errorf("text does not show the reconciled entry:\n%s", r.stdout)
	}
	if r := h.run("job", "reconcile", "--help"); r.code != 0 || !strings.Contains(r.stdout, "overlord job reconcile 019a2b3c") {
		t.Errorf("--help: exit %d\n%s", r.code, r.stdout)
	}

	running := storeJob(t, h, status.Partial, map[string]status.Result{"web1": {State: status.Running, MinionJobID: "0193-minion-job"}})
	holdDriverLock(t, h.dir, running)
	r := h.run("job", "reconcile", running)
	if msg := fmt.Sprint(r.err); r.code != status.ExitWaitTimeout || !strings.Contains(msg, "is PARTIAL") || !strings.Contains(msg, "--wait") {
		t.Errorf("a job not FINISHED: exit %d, %v; want 4 and how to wait", r.code, r.err)
	}
}
