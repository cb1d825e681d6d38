// Package rpc is the wire between the overlord and its minions: JSON-RPC
// 2.0 (gorilla/rpc's json2 codec) over HTTPS with mutual TLS, at POST
// /rpc. It defines the methods' parameters and replies, how failures
// travel as JSON-RPC errors with a stable kind, and a client that maps
// every failure, local or remote, to a status.Error.
package rpc

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/rpc/v2"
	"github.com/gorilla/rpc/v2/json2"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/status"
)

// Path is where minions serve JSON-RPC.
const Path = "/rpc"

// DefaultPort is the minion's default port (Func's).
const DefaultPort = 51234

// MaxRequestBytes bounds a request body.
const MaxRequestBytes = 8 << 20

// Limits on what one reply carries. The minion never sends more, and the
// client reads no more, so a reply the minion sends always fits what the
// client reads.
const (
	// MaxOutput is the most output of one stream (a command's stdout, or
	// its stderr) a reply carries: command.run's max_output is at most
	// this, and larger values are bad_args. Kept small on purpose: a
	// minion builds the JSON of a reply whole, so this bounds its memory
	// per call (a larger output is for an async job's spool, or fetch).
	MaxOutput = 4 << 20
	// MaxResultBytes bounds the JSON of one method's result. It holds
	// the largest a built-in returns: two streams of MaxOutput bytes,
	// each byte escaped to at most 6 ("\u003c" for '<', "\ufffd" for a
	// byte that is not UTF-8) and, for a stream that is not UTF-8, its
	// exact bytes in base64 too (at most 2 more per byte); or file.read's
	// 16 MiB of content, escaped; and 1 MiB for the rest. A minion
	// refuses to send a larger result (kind internal).
	MaxResultBytes = max(2*(6+2)*MaxOutput, 6*(16<<20)) + 1<<20
	// MaxJobsBytes bounds the JSON of the job statuses of one
	// Minion.Status or Minion.List reply, output included, but for the
	// first job's result, which always comes whole (up to
	// MaxResultBytes).
	MaxJobsBytes = 32 << 20
	// MaxResponseBytes bounds a response body the client reads: a result
	// and a reply's job statuses, with 16 MiB to spare for the envelope,
	// error messages and the short entries of jobs past MaxJobsBytes.
	MaxResponseBytes = MaxResultBytes + MaxJobsBytes + 16<<20
)

// errReplyTooBig ends the reading of an answer past MaxResponseBytes:
// the minion answered, with more than a reply may carry (the call fails
// with kind internal, saying so).
var errReplyTooBig = errors.New("reply over the size limit")

// EncodeResult returns the JSON of a method's result, or an error of
// kind internal if it is over MaxResultBytes: more than the caller would
// read.
func EncodeResult(result any) (json.RawMessage, error) {
	return encodeResult(result, MaxResultBytes)
}

func encodeResult(result any, limit int) (json.RawMessage, error) {
	raw, err := json.Marshal(result)
	if err != nil {
		return nil, status.Errorf(status.KindInternal, "encode result: %v", err)
	}
	if len(raw) > limit {
		return nil, status.Errorf(status.KindInternal, "the result is %d bytes of JSON, over the %d a reply may carry", len(raw), limit)
	}
	return raw, nil
}

// CallParams are the parameters of Minion.Call.
type CallParams struct {
	Module string         `json:"module"`
	Method string         `json:"method"`
	Args   map[string]any `json:"args,omitempty"`
	// Positional values fill the method's parameters in order, on the
	// minion; the overlord binds them itself for modules it knows.
	Positional []any `json:"positional,omitempty"`
	// TimeoutMS bounds the method's run on the minion; 0 is the minion's
	// default.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
	// OriginJobID, when set, makes the call one that outlives its wait:
	// TimeoutMS is then how long the caller waits for the answer, and
	// JobTimeoutMS bounds the method's run. If the method has not
	// returned when the wait ends, or the caller goes away first, the
	// minion keeps running it as the job of this origin (Minion.Adopt
	// finds it) and answers Detached. A minion that predates this field
	// ignores it and stops the method at TimeoutMS, as before.
	OriginJobID  string `json:"origin_job_id,omitempty"`
	JobTimeoutMS int64  `json:"job_timeout_ms,omitempty"`
}

// CallReply is the reply of Minion.Call.
type CallReply struct {
	Result     json.RawMessage `json:"result"`
	DurationMS int64           `json:"duration_ms"`
	// Detached is set when the method still runs after the caller's
	// wait: JobID is then the minion job that carries it on.
	Detached bool   `json:"detached,omitempty"`
	JobID    string `json:"job_id,omitempty"`
}

// DescribeParams are the parameters of Minion.Describe (none).
type DescribeParams struct{}

// DescribeReply is the reply of Minion.Describe.
type DescribeReply struct {
	Name    string               `json:"name"`
	Version string               `json:"version"`
	Modules []modules.ModuleInfo `json:"modules"`
}

// JSON-RPC error codes the minion uses, one per kind. Clients should branch
// on ErrorData.Kind; the codes are for generic JSON-RPC tooling.
const (
	CodeBadArgs       = json2.E_BAD_PARAMS
	CodeInternal      = json2.E_INTERNAL
	CodeUnknownModule = -32001
	CodeUnknownMethod = -32002
	CodeModuleError   = -32003
	CodeDenied        = -32004
	CodeTimeout       = -32005
	CodeCancelled     = -32006
	CodeLost          = -32007
)

var kindCodes = map[status.Kind]json2.ErrorCode{
	status.KindBadArgs:       CodeBadArgs,
	status.KindInternal:      CodeInternal,
	status.KindUnknownModule: CodeUnknownModule,
	status.KindUnknownMethod: CodeUnknownMethod,
	status.KindModuleError:   CodeModuleError,
	status.KindDenied:        CodeDenied,
	status.KindTimeout:       CodeTimeout,
	status.KindCancelled:     CodeCancelled,
	status.KindLost:          CodeLost,
}

// ErrorData is the "data" member of a minion's JSON-RPC error.
type ErrorData struct {
	Kind status.Kind `json:"kind"`
	// Result is what the method returned along with its failure, such as
	// the output of a command that exited non-zero.
	Result json.RawMessage `json:"result,omitempty"`
	// Busy says the minion turned the call away for now (its async job
	// limits): the same call may succeed later. The client's error then
	// wraps ErrBusy.
	Busy bool `json:"busy,omitempty"`
}

// Busy marks se as a refusal for now: NewError sets ErrorData.Busy, and
// the error wraps ErrBusy.
func Busy(se *status.Error) error { return busyError{se} }

// NewError turns err (and any result returned with it) into a JSON-RPC
// error carrying its kind.
func NewError(err error, result any) *json2.Error {
	kind := status.KindOf(err)
	msg := err.Error()
	var se *status.Error
	if errors.As(err, &se) {
		msg = se.Message
	}
	code, ok := kindCodes[kind]
	if !ok {
		code = json2.E_SERVER
	}
	data := ErrorData{Kind: kind, Busy: errors.Is(err, ErrBusy)}
	if result != nil {
		raw, mErr := json.Marshal(result)
		switch {
		case mErr != nil:
		case len(raw) > MaxResultBytes:
			msg += fmt.Sprintf(" (its result, %d bytes of JSON, is over the %d a reply may carry: left out)", len(raw), MaxResultBytes)
		default:
			data.Result = raw
		}
	}
	return &json2.Error{Code: code, Message: msg, Data: data}
}

// NewServer returns an http.Handler serving the given services (name ->
// receiver, in gorilla/rpc's method form) with the json2 codec. Failures
// gorilla reports itself (an unknown method, unreadable params) become
// JSON-RPC errors with a kind too.
func NewServer(services map[string]any) (http.Handler, error) {
	s := rpc.NewServer()
	codec := newStrictCodec()
	s.RegisterCodec(codec, "application/json")
	s.RegisterCodec(codec, "application/json-rpc")
	for name, svc := range services {
		if err := s.RegisterService(svc, name); err != nil {
			return nil, err
		}
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+Path, http.MaxBytesHandler(s, MaxRequestBytes))
	return mux, nil
}

func mapError(err error) error {
	var se *status.Error
	if errors.As(err, &se) {
		return NewError(se, nil)
	}
	// gorilla's own: no such service or method, or a name that is not
	// SERVICE.METHOD ("Minion.Call.x").
	if msg := err.Error(); strings.HasPrefix(msg, "rpc: can't find") || strings.HasPrefix(msg, "rpc: service/method request ill-formed") {
		return &json2.Error{Code: json2.E_NO_METHOD, Message: err.Error(), Data: ErrorData{Kind: status.KindUnknownMethod}}
	}
	return &json2.Error{Code: json2.E_SERVER, Message: err.Error(), Data: ErrorData{Kind: status.KindInternal}}
}

// SubmitParams are the parameters of Minion.Submit.
type SubmitParams struct {
	// OriginJobID is the caller's job ID. The same caller and origin job
	// ID always map to the same minion job, so a Submit may be retried.
	OriginJobID string         `json:"origin_job_id"`
	Module      string         `json:"module"`
	Method      string         `json:"method"`
	Args        map[string]any `json:"args,omitempty"`
	Positional  []any          `json:"positional,omitempty"`
	// TimeoutMS bounds the job's run; 0 is the minion's default.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
}

// AdoptParams are the parameters of Minion.Adopt, which returns the job a
// Minion.Call of the caller's origin job left running (or finished after
// its caller went away), detaching the call first if it still waits. It
// never starts a job: without one the error is of kind lost. It is how a
// synchronous call that stopped waiting is carried on without running
// anything twice. The reply is a SubmitReply with Created false.
type AdoptParams struct {
	OriginJobID string `json:"origin_job_id"`
}

// SubmitReply is the reply of Minion.Submit (and Minion.Adopt).
type SubmitReply struct {
	JobID string `json:"job_id"`
	// Created is false when the job already existed (a retried Submit).
	Created bool `json:"created"`
}

// StatusParams are the parameters of Minion.Status.
type StatusParams struct {
	JobIDs []string `json:"job_ids"`
	// FromOffset is where in each job's output to start reading.
	FromOffset int64 `json:"from_offset,omitempty"`
	// MaxOutput caps the output returned per job: 0 is the default
	// (64 KiB), a negative value returns none, and more than 1 MiB is
	// cut to 1 MiB. A reply carries at most 8 MiB of output in all.
	MaxOutput int `json:"max_output,omitempty"`
	// WaitMS, if positive, makes the call wait up to this long (at most
	// 30 s) for any of the jobs to change state before answering: a long
	// poll, so a caller learns of a finished job at once without asking
	// over and over.
	WaitMS int64 `json:"wait_ms,omitempty"`
}

// StatusReply is the reply of Minion.Status, one entry per job asked for,
// in the same order.
type StatusReply struct {
	Jobs []JobStatus `json:"jobs"`
}

// JobStatus is a minion job's state. A job the minion does not know (never
// submitted, or purged) is FINISHED with error kind lost.
type JobStatus struct {
	JobID       string          `json:"job_id"`
	OriginJobID string          `json:"origin_job_id,omitempty"`
	Module      string          `json:"module,omitempty"`
	Method      string          `json:"method,omitempty"`
	State       status.State    `json:"state"`
	OK          bool            `json:"ok"`
	Result      json.RawMessage `json:"result,omitempty"`
	Error       *status.Error   `json:"error,omitempty"`
	// Output is the job's output (stdout and stderr as produced) from
	// the offset asked for; NextOffset is where to read on from.
	Output     string `json:"output,omitempty"`
	NextOffset int64  `json:"next_offset"`
	// Truncated is set when the reply's size limits left out some of
	// this job's output (or its result) that the request asked for:
	// ask for the job again, alone, from NextOffset.
	Truncated  bool       `json:"truncated,omitempty"`
	DurationMS int64      `json:"duration_ms,omitempty"`
	CreatedAt  time.Time  `json:"created_at,omitzero"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// CancelParams are the parameters of Minion.Cancel.
type CancelParams struct {
	JobID string `json:"job_id"`
	// Reason is the kind the job ends with: cancelled (the default) or
	// timeout (the caller's deadline passed).
	Reason status.Kind `json:"reason,omitempty"`
}

// CancelReply is the reply of Minion.Cancel: the job's state after the
// cancel was requested.
type CancelReply struct {
	JobStatus
}

// ListParams are the parameters of Minion.List.
type ListParams struct {
	Limit int `json:"limit,omitempty"`
}

// ListReply is the reply of Minion.List, newest first.
type ListReply struct {
	Jobs []JobStatus `json:"jobs"`
}

// MaxChunk bounds the data of one WriteChunk or ReadChunk.
const MaxChunk = 4 << 20

// WriteChunkParams are the parameters of Minion.WriteChunk, which
// `overlord cp` uses to stream a file to a minion in order: chunks of one
// transfer go to a temporary file beside Path; the final one is checked
// against SHA256 and the file renamed into place.
type WriteChunkParams struct {
	TransferID string `json:"transfer_id"`
	Path       string `json:"path"` // absolute
	Offset     int64  `json:"offset"`
	Data       []byte `json:"data"`           // base64 in JSON
	Mode       uint32 `json:"mode,omitempty"` // permission bits, on the final chunk
	Final      bool   `json:"final,omitempty"`
	SHA256     string `json:"sha256,omitempty"` // the whole file's, with Final
}

// WriteChunkReply is the reply of Minion.WriteChunk.
type WriteChunkReply struct {
	Written int64  `json:"written"`          // bytes so far
	SHA256  string `json:"sha256,omitempty"` // once final, the file's digest
}

// ReadChunkParams are the parameters of Minion.ReadChunk, which
// `overlord fetch` uses to read a file from a minion.
type ReadChunkParams struct {
	Path   string `json:"path"` // absolute
	Offset int64  `json:"offset"`
	Length int    `json:"length"` // at most MaxChunk
}

// ReadChunkReply is the reply of Minion.ReadChunk.
type ReadChunkReply struct {
	Data []byte `json:"data"`
	Size int64  `json:"size"` // the file's size
	Mode uint32 `json:"mode"` // its permission bits
	EOF  bool   `json:"eof"`
	// SHA256 is the whole file's digest, given with the chunk at offset 0.
	SHA256 string `json:"sha256,omitempty"`
}

// CRLHeader is the response header in which a minion tells, on every
// answer, the number of the revocation list it holds ("0" for none), so
// that an overlord with a newer one sends it (Minion.UpdateCRL).
const CRLHeader = "Overlord-Crl-Number"

// UpdateCRLParams are the parameters of Minion.UpdateCRL.
type UpdateCRLParams struct {
	// CRL is the DER of an X.509 revocation list signed by the minion's
	// CA (base64 in JSON).
	CRL []byte `json:"crl"`
}

// UpdateCRLReply is the reply of Minion.UpdateCRL.
type UpdateCRLReply struct {
	// Number is the number of the list the minion holds now.
	Number int64 `json:"number"`
	// Updated is false when the minion already held this list or a
	// newer one.
	Updated bool `json:"updated"`
	// Revoked is how many certificates the list held now revokes.
	Revoked int `json:"revoked"`
}
