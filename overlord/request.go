package overlord

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/status"
)

// CallRequest is a call described in JSON, with call's flags as fields:
// what `overlord transmit` reads on standard input and the HTTP API's
// POST /v1/jobs takes. Unknown fields are refused.
type CallRequest struct {
	Target         string         `json:"target"`
	Module         string         `json:"module"`
	Method         string         `json:"method"`
	Args           map[string]any `json:"args"`
	Async          bool           `json:"async"`
	Timeout        string         `json:"timeout"`
	ConnectTimeout string         `json:"connect_timeout"`
	Forks          int            `json:"forks"`
	Batch          string         `json:"batch"`
	BatchWait      string         `json:"batch_wait"`
	MaxFail        string         `json:"max_fail"`
	Queue          bool           `json:"queue"`
	Where          []string       `json:"where"`
}

// MaxCallRequest bounds a CallRequest's JSON.
const MaxCallRequest = 8 << 20

// ErrBadRequest marks a CallRequest that cannot be made: not JSON, an
// unknown field, a missing or malformed value.
var ErrBadRequest = errors.New("bad request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// RequestMessage returns err's message without the ErrBadRequest mark.
func RequestMessage(err error) string {
	return strings.TrimPrefix(err.Error(), ErrBadRequest.Error()+": ")
}

// DecodeCallRequest reads one CallRequest from r: one JSON object of its
// fields and nothing after it, at most MaxCallRequest bytes.
func DecodeCallRequest(r io.Reader) (CallRequest, error) {
	dec := json.NewDecoder(io.LimitReader(r, MaxCallRequest+1))
	dec.DisallowUnknownFields()
	var q CallRequest
	if err := dec.Decode(&q); err != nil {
		return q, badRequest("the request is not a JSON object of the call's fields: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return q, badRequest("the request is one JSON object; there is more after it")
	}
	return q, nil
}

// Spec checks the request and returns the call it describes, with the
// defaults call's flags have. The error wraps ErrBadRequest.
func (q CallRequest) Spec() (CallSpec, error) {
	if q.Target == "" || q.Module == "" || q.Method == "" {
		return CallSpec{}, badRequest("the request needs target, module and method")
	}
	spec := CallSpec{Target: q.Target, Module: q.Module, Method: q.Method, Args: q.Args, Where: q.Where,
		Forks: fanout.DefaultForks, Timeout: DefaultCallTimeout, ConnectTimeout: DefaultConnectTimeout}
	if spec.Args == nil {
		spec.Args = map[string]any{}
	}
	if q.Forks != 0 {
		spec.Forks = q.Forks
	}
	if spec.Forks < 1 {
		return spec, badRequest("forks must be at least 1, got %d", spec.Forks)
	}
	if q.Async && q.Timeout == "" {
		spec.Timeout = DefaultAsyncTimeout
	}
	durations := []struct {
		name string
		s    string
		dst  *time.Duration
	}{{"timeout", q.Timeout, &spec.Timeout}, {"connect_timeout", q.ConnectTimeout, &spec.ConnectTimeout}, {"batch_wait", q.BatchWait, &spec.Batch.Wait}}
	for _, d := range durations {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return spec, badRequest("%s: %v", d.name, err)
		}
		if v < 0 || (v == 0 && d.name == "timeout") {
			return spec, badRequest("%s must be positive, got %s", d.name, d.s)
		}
		*d.dst = v
	}
	if q.Batch != "" {
		n, err := ParseCount(q.Batch)
		if err == nil && n.N < 1 {
			err = fmt.Errorf("want at least 1 (or 1%%), got %q", q.Batch)
		}
		if err != nil {
			return spec, badRequest("batch: %v", err)
		}
		spec.Batch.Size = n
	}
	if q.MaxFail != "" {
		n, err := ParseCount(q.MaxFail)
		if err != nil {
			return spec, badRequest("max_fail: %v", err)
		}
		spec.Batch.MaxFail = &n
	}
	if err := spec.Batch.Check(); err != nil {
		return spec, badRequest("%v", err)
	}
	if q.Queue && !q.Async {
		return spec, badRequest("queue needs async: only an async job waits for minions to come back")
	}
	return spec, nil
}

// PrepareMessage returns the message a user should see for err, an error
// of Prepare on spec that is the request's fault (its arguments do not
// fit the method), and whether it is one: "command.run has no parameter
// runas; ...".
func PrepareMessage(spec CallSpec, err error) (string, bool) {
	var se *status.Error
	if !errors.As(err, &se) {
		return "", false
	}
	name := spec.Module + "." + spec.Method
	msg := strings.TrimPrefix(se.Message, spec.Method+": ")
	if !strings.HasPrefix(msg, name+" ") {
		msg = name + ": " + msg
	}
	return msg, true
}
