package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/overlord"
)

// Bad --batch, --batch-wait and --max-fail are usage errors (exit 2) that
// say what to do, on call, cp and fetch alike, and record nothing.
func TestBatchFlagsUsage(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addMinion("web1")
	local := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(local, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	commands := map[string][]string{
		"call":  {"call", "web1", "test.ping"},
		"cp":    {"cp", local, "web1:/tmp/f"},
		"fetch": {"fetch", "web1:/etc/hostname", t.TempDir()},
	}
	tests := []struct {
		flags []string
		msg   string
	}{
		{[]string{"--batch", "0"}, "want at least 1"},
		{[]string{"--batch=-1"}, "negative"},
		{[]string{"--batch", "0%"}, "want at least 1"},
		{[]string{"--batch", "150%"}, "more than the whole target"},
		{[]string{"--batch", "abc"}, "want a number of minions N or a percentage of the target N%"},
		{[]string{"--batch", "2.5"}, "want a number of minions"},
		{[]string{"--batch", ""}, "want a number of minions"},
		{[]string{"--batch-wait", "5s"}, "--batch-wait needs --batch"},
		{[]string{"--max-fail", "0"}, "--max-fail needs --batch"},
		{[]string{"--batch", "2", "--max-fail", "x"}, "want a number of minions"},
		{[]string{"--batch", "2", "--max-fail", "120%"}, "more than the whole target"},
		{[]string{"--batch", "2", "--batch-wait=-1s"}, "--batch-wait must not be negative"},
		{[]string{"--batch", "2", "--batch-wait", "5"}, "invalid argument"},
	}
	for name, args := range commands {
		for _, tt := range tests {
			r := h.run(append(append([]string(nil), args...), tt.flags...)...)
			if r.code != 2 || r.err == nil || !strings.Contains(r.err.Error(), tt.msg) {
				t.Errorf("%s %s: exit %d, error %v; want 2 saying %q", name, strings.Join(tt.flags, " "), r.code, r.err, tt.msg)
			}
			if r.stdout != "" {
				t.Errorf("%s %s: stdout on a usage error: %q", name, strings.Join(tt.flags, " "), r.stdout)
			}
		}
	}
	recs, err := jobs.New(filepath.Join(h.dir, overlord.DBFile), 0).ListJobs(jobs.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 0 {
		t.Errorf("%d jobs recorded by usage errors", len(recs))
	}
}

// --batch with a dead minion and --max-fail 0: the later batches are
// skipped; JSON carries each entry's batch and the summary's skipped.
func TestCallBatchJSON(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addDeadMinion("web1")
	h.addMinion("web2")
	h.addMinion("web3")
	r := h.run("call", "web*", "test.ping", "--batch", "1", "--max-fail", "0", "--connect-timeout", "1s", "-o", "json")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1: %v\n%s", r.code, r.err, r.stdout)
	}
	var doc struct {
		Minions map[string]struct {
			Batch int `json:"batch"`
			Error *struct {
				Kind string `json:"kind"`
			} `json:"error"`
		} `json:"minions"`
		Summary map[string]int `json:"summary"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	for n, want := range map[string]struct {
		batch int
		kind  string
	}{"web1": {1, "unreachable"}, "web2": {2, "skipped"}, "web3": {3, "skipped"}} {
		e := doc.Minions[n]
		if e.Batch != want.batch || e.Error == nil || e.Error.Kind != want.kind {
			t.Errorf("%s: batch %d error %+v, want batch %d kind %s", n, e.Batch, e.Error, want.batch, want.kind)
		}
	}
	if doc.Summary["failed"] != 3 || doc.Summary["skipped"] != 2 || doc.Summary["total"] != 3 {
		t.Errorf("summary %v", doc.Summary)
	}
	// Without --batch, no batch anywhere.
	r = h.run("call", "web2", "test.ping", "-o", "json")
	if r.code != 0 || strings.Contains(r.stdout, `"batch"`) || strings.Contains(r.stdout, `"skipped"`) {
		t.Errorf("a call without --batch: exit %d\n%s", r.code, r.stdout)
	}
}
