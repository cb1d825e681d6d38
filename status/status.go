// Package status defines the lifecycle states, outcome kinds and result
// records that the overlord and its minions share, and the JSON shape they
// are printed in (docs/json-output.md). These names are a contract with
// scripts: new fields may be added, none renamed or removed.
package status

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// State is the lifecycle state of a job or of one minion's part of a job.
// Whether a step succeeded is a separate outcome (OK plus an Error).
type State string

// Lifecycle states.
const (
	Running  State = "RUNNING"
	Partial  State = "PARTIAL"
	Finished State = "FINISHED"
)

// ParseState returns the State named by s, accepting any letter case.
func ParseState(s string) (State, error) {
	switch st := State(strings.ToUpper(s)); st {
	case Running, Partial, Finished:
		return st, nil
	}
	return "", fmt.Errorf("unknown state %q (want RUNNING, PARTIAL or FINISHED)", s)
}

// Kind is the stable, machine-readable class of a failure.
type Kind string

// Error kinds. Scripts branch on these.
const (
	KindUnreachable   Kind = "unreachable"    // the minion could not be reached
	KindTLS           Kind = "tls"            // the TLS handshake or identity check failed
	KindTimeout       Kind = "timeout"        // the call ran past its time
	KindUnknownModule Kind = "unknown_module" // the minion has no such module
	KindUnknownMethod Kind = "unknown_method" // the module has no such method
	KindBadArgs       Kind = "bad_args"       // arguments did not match the declared parameters
	KindModuleError   Kind = "module_error"   // the method ran and failed
	KindDenied        Kind = "denied"         // the caller may not call this method
	KindLost          Kind = "lost"           // the minion lost track of the job
	KindCancelled     Kind = "cancelled"      // the job was cancelled
	KindSkipped       Kind = "skipped"        // never started: --max-fail stopped a batched job's later batches
	KindInternal      Kind = "internal"       // a bug or an unexpected failure
)

// Error is a failure with a stable kind. It is both a Go error and the JSON
// "error" object of a result.
type Error struct {
	Kind    Kind   `json:"kind"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return string(e.Kind) + ": " + e.Message }

// Errorf returns an *Error of the given kind.
func Errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// KindOf returns the kind of err: its own if it is or wraps an *Error,
// otherwise KindInternal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// Result is one minion's part of a job.
type Result struct {
	State       State           `json:"state"`
	OK          bool            `json:"ok"`
	MinionJobID string          `json:"minion_job_id,omitempty"`
	Result      json.RawMessage `json:"result,omitempty"`
	Error       *Error          `json:"error,omitempty"`
	DurationMS  int64           `json:"duration_ms,omitempty"`
	// Via names the gateway that carried the call to the minion, for a
	// minion behind gateways (jobs.Minion.Via); absent for a minion
	// called directly.
	Via string `json:"via,omitempty"`
	// Batch is the entry's batch in a batched job (--batch), from 1, in
	// target order; 0 (absent) when the job is not batched.
	Batch int `json:"batch,omitempty"`
	// QueuedSince is set on an open entry of a --queue job whose minion
	// could not be reached: when the first try to reach it failed. The
	// entry waits for the minion to come back, until the job's deadline;
	// LastError is why the last try failed.
	QueuedSince *time.Time `json:"queued_since,omitempty"`
	LastError   *Error     `json:"last_error,omitempty"`
	// Reconciled is set on an entry the overlord first ended itself
	// (unreachable, timeout) and later replaced with the minion's own
	// result (`overlord job reconcile`); ErrorBeforeReconcile is the
	// error it had then.
	Reconciled           bool   `json:"reconciled,omitempty"`
	ErrorBeforeReconcile *Error `json:"error_before_reconcile,omitempty"`
}

// Queued reports whether r waits for its minion to come back (--queue):
// open, never delivered, and marked queued.
func (r Result) Queued() bool {
	return r.State != Finished && r.MinionJobID == "" && r.QueuedSince != nil
}

// Answered reports whether r shows that the minion itself answered: it
// succeeded, or failed in a way only the minion could report.
func (r Result) Answered() bool {
	if r.OK || r.MinionJobID != "" {
		return true
	}
	if r.Error == nil {
		return false
	}
	switch r.Error.Kind {
	case KindModuleError, KindBadArgs, KindUnknownModule, KindUnknownMethod, KindDenied:
		return true
	}
	return false
}

// Failed reports whether r is finished and not ok.
func (r Result) Failed() bool { return r.State == Finished && !r.OK }

// Skipped reports whether r is a minion a batched job never started.
func (r Result) Skipped() bool {
	return r.State == Finished && !r.OK && r.Error != nil && r.Error.Kind == KindSkipped
}

// Summary counts the minions of a job by outcome.
type Summary struct {
	Total   int `json:"total"`
	OK      int `json:"ok"`
	Failed  int `json:"failed"`
	Pending int `json:"pending"`
	// Skipped counts those of Failed that a batched job never started
	// (kind skipped); absent when 0.
	Skipped int `json:"skipped,omitempty"`
}

// Add counts r.
func (s *Summary) Add(r Result) {
	s.Total++
	switch {
	case r.State != Finished:
		s.Pending++
	case r.OK:
		s.OK++
	default:
		s.Failed++
		if r.Skipped() {
			s.Skipped++
		}
	}
}

// Job is a job as printed by `overlord call -o json` and `overlord job
// status -o json`.
type Job struct {
	JobID      string         `json:"job_id"`
	State      State          `json:"state"`
	Target     string         `json:"target"`
	Module     string         `json:"module"`
	Method     string         `json:"method"`
	Args       map[string]any `json:"args,omitempty"`
	CreatedAt  time.Time      `json:"created_at"`
	FinishedAt *time.Time     `json:"finished_at,omitempty"`
	// SubmittedBy: who asked for the job through the HTTP API or the
	// dashboard (jobs.Record.SubmittedBy).
	SubmittedBy string            `json:"submitted_by,omitempty"`
	Minions     map[string]Result `json:"minions"`
	Summary     Summary           `json:"summary"`
}

// Exit codes of the overlord CLI (docs/cli.md).
const (
	ExitOK          = 0 // every minion ok
	ExitFailed      = 1 // at least one minion failed
	ExitUsage       = 2 // usage or configuration error
	ExitNoMatch     = 3 // the target matched no minion
	ExitWaitTimeout = 4 // --wait timed out, or the job is not FINISHED yet
)

// ExitCode returns the exit code for a job with summary s: 1 if a minion
// failed, else 4 while some are pending (the job is not known to be ok
// yet; `job status` without --wait), else 0.
func (s Summary) ExitCode() int {
	switch {
	case s.Failed > 0:
		return ExitFailed
	case s.Pending > 0:
		return ExitWaitTimeout
	}
	return ExitOK
}

// Remove uncounts r, undoing Add.
func (s *Summary) Remove(r Result) {
	s.Total--
	switch {
	case r.State != Finished:
		s.Pending--
	case r.OK:
		s.OK--
	default:
		s.Failed--
		if r.Skipped() {
			s.Skipped--
		}
	}
}
