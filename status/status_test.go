package status_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/status"
)

func TestParseState(t *testing.T) {
	tests := []struct {
		in   string
		want status.State
		ok   bool
	}{
		{"RUNNING", status.Running, true},
		{"running", status.Running, true},
		{"Partial", status.Partial, true},
		{"finished", status.Finished, true},
		{"", "", false},
		{"DONE", "", false},
		{" running", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := status.ParseState(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("ParseState(%q) = %q, %v", tt.in, got, err)
			}
		})
	}
}

func TestKindOf(t *testing.T) {
	se := status.Errorf(status.KindDenied, "no %s", "way")
	tests := []struct {
		name string
		err  error
		want status.Kind
	}{
		{"status error", se, status.KindDenied},
		{"wrapped", fmt.Errorf("call: %w", se), status.KindDenied},
		{"joined", errors.Join(errors.New("x"), se), status.KindDenied},
		{"plain", errors.New("x"), status.KindInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status.KindOf(tt.err); got != tt.want {
				t.Errorf("KindOf = %q, want %q", got, tt.want)
			}
		})
	}
	if se.Error() != "denied: no way" {
		t.Errorf("Error() = %q", se.Error())
	}
}

func TestSummary(t *testing.T) {
	ok := status.Result{State: status.Finished, OK: true}
	failed := status.Result{State: status.Finished, Error: &status.Error{Kind: status.KindUnreachable}}
	running := status.Result{State: status.Running}
	partial := status.Result{State: status.Partial}

	var s status.Summary
	for _, r := range []status.Result{ok, ok, failed, running, partial} {
		s.Add(r)
	}
	if want := (status.Summary{Total: 5, OK: 2, Failed: 1, Pending: 2}); s != want {
		t.Errorf("Summary = %+v, want %+v", s, want)
	}
	if s.ExitCode() != status.ExitFailed {
		t.Errorf("ExitCode = %d with a failure", s.ExitCode())
	}
	s.Remove(failed)
	s.Remove(running)
	s.Add(ok)
	if want := (status.Summary{Total: 4, OK: 3, Failed: 0, Pending: 1}); s != want {
		t.Errorf("after Remove = %+v, want %+v", s, want)
	}
	if s.ExitCode() != status.ExitWaitTimeout {
		t.Errorf("ExitCode = %d with one pending, no failures; want 4 (not known to be ok yet)", s.ExitCode())
	}
	s.Remove(partial)
	if s.ExitCode() != status.ExitOK {
		t.Errorf("ExitCode = %d with every minion ok", s.ExitCode())
	}
	if !failed.Failed() || ok.Failed() || running.Failed() {
		t.Error("Failed() is wrong")
	}
}

func TestSummarySkipped(t *testing.T) {
	ok := status.Result{State: status.Finished, OK: true, Batch: 1}
	failed := status.Result{State: status.Finished, Error: &status.Error{Kind: status.KindModuleError}, Batch: 1}
	skipped := status.Result{State: status.Finished, Error: status.Errorf(status.KindSkipped, "not started"), Batch: 2}
	pending := status.Result{State: status.Running, Batch: 2}

	var s status.Summary
	for _, r := range []status.Result{ok, failed, pending, pending} {
		s.Add(r)
	}
	// The driver ends the pending entries skipped, as the store does:
	// Remove the old entry, Add the new.
	for range 2 {
		s.Remove(pending)
		s.Add(skipped)
	}
	if want := (status.Summary{Total: 4, OK: 1, Failed: 3, Skipped: 2}); s != want {
		t.Errorf("Summary = %+v, want %+v", s, want)
	}
	// Minions never started are not ok: the exit status says so.
	if s.ExitCode() != status.ExitFailed {
		t.Errorf("ExitCode = %d with skipped minions, want 1", s.ExitCode())
	}
	if !skipped.Skipped() || failed.Skipped() || pending.Skipped() {
		t.Error("Skipped() is wrong")
	}
	s.Remove(skipped)
	if s.Skipped != 1 || s.Failed != 2 {
		t.Errorf("after Remove(skipped): %+v", s)
	}
	// skipped is left out of JSON when 0, so jobs that are not batched
	// print the summary they always did.
	data, err := json.Marshal(status.Summary{Total: 1, OK: 1})
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != `{"total":1,"ok":1,"failed":0,"pending":0}` {
		t.Errorf("summary JSON %s", data)
	}
	data, _ = json.Marshal(skipped)
	if !strings.Contains(string(data), `"batch":2`) || !strings.Contains(string(data), `"kind":"skipped"`) {
		t.Errorf("skipped entry JSON %s", data)
	}
}

func TestExitCodes(t *testing.T) {
	// docs/cli.md and scripts depend on these numbers.
	got := []int{status.ExitOK, status.ExitFailed, status.ExitUsage, status.ExitNoMatch, status.ExitWaitTimeout}
	if !reflect.DeepEqual(got, []int{0, 1, 2, 3, 4}) {
		t.Errorf("exit codes %v", got)
	}
}

// TestJobJSONContract checks the field names of the documented JSON output
// (ARCHITECTURE section 7): new fields may be added, none renamed.
func TestJobJSONContract(t *testing.T) {
	fin := time.Date(2026, 11, 21, 13, 0, 1, 0, time.UTC)
	job := status.Job{
		JobID: "0193", State: status.Finished, Target: "web*", Module: "command", Method: "run",
		CreatedAt: time.Date(2026, 11, 21, 13, 0, 0, 0, time.UTC), FinishedAt: &fin,
		Minions: map[string]status.Result{
			"web1": {State: status.Finished, OK: true, MinionJobID: "0194", Result: json.RawMessage(`{"stdout":"hi"}`), DurationMS: 12},
			"web2": {State: status.Finished, Error: &status.Error{Kind: status.KindUnreachable, Message: "refused"}},
		},
		Summary: status.Summary{Total: 2, OK: 1, Failed: 1},
	}
	raw, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	wantTop := []string{"created_at", "finished_at", "job_id", "method", "minions", "module", "state", "summary", "target"}
	if got := keys(doc); !reflect.DeepEqual(got, wantTop) {
		t.Errorf("job keys %v, want %v", got, wantTop)
	}
	if doc["created_at"] != "2026-11-21T13:00:00Z" {
		t.Errorf("created_at = %v", doc["created_at"])
	}
	minions := doc["minions"].(map[string]any)
	web1 := minions["web1"].(map[string]any)
	if got, want := keys(web1), []string{"duration_ms", "minion_job_id", "ok", "result", "state"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ok entry keys %v, want %v", got, want)
	}
	web2 := minions["web2"].(map[string]any)
	if got, want := keys(web2), []string{"error", "ok", "state"}; !reflect.DeepEqual(got, want) {
		t.Errorf("failed entry keys %v, want %v", got, want)
	}
	if web2["ok"] != false {
		t.Error(`a failed entry must say "ok": false`)
	}
	if got, want := keys(web2["error"].(map[string]any)), []string{"kind", "message"}; !reflect.DeepEqual(got, want) {
		t.Errorf("error keys %v, want %v", got, want)
	}
	if got, want := keys(doc["summary"].(map[string]any)), []string{"failed", "ok", "pending", "total"}; !reflect.DeepEqual(got, want) {
		t.Errorf("summary keys %v, want %v", got, want)
	}

	var back status.Job
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if back.Minions["web2"].Error.Kind != status.KindUnreachable || back.Summary != job.Summary {
		t.Errorf("round trip lost data: %+v", back)
	}
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
