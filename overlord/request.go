package overlord

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
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

// Bounds of a CallRequest's values. Resolving a target costs the service
// time that grows faster than the target's length, and every where
// condition is checked against every minion: a request past these is
// refused before anything is resolved.
const (
	// MaxTarget bounds the target expression, in bytes. A longer list
	// of minions is a group's job (@group).
	MaxTarget = 16 << 10
	// MaxWhere bounds the where conditions.
	MaxWhere = 64
	// MaxWait bounds timeout, connect_timeout and batch_wait: a minion
	// keeps a job 7 days at most (minion.MaxJobTimeout), and a longer
	// duration would overflow the deadlines computed from it.
	MaxWait = 7 * 24 * time.Hour
)

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
// fields and nothing after it, at most MaxCallRequest bytes. Field names
// are matched exactly (encoding/json alone would take "Target" for
// "target"), and no object in it may name a key twice: a request must
// mean the same to the service as to whatever checked it on its way.
// The error wraps ErrBadRequest, and what reading r returned, if that
// failed.
func DecodeCallRequest(r io.Reader) (CallRequest, error) {
	var q CallRequest
	data, err := io.ReadAll(io.LimitReader(r, MaxCallRequest+1))
	if err != nil {
		return q, fmt.Errorf("%w: the request could not be read: %w", ErrBadRequest, err)
	}
	if len(data) > MaxCallRequest {
		return q, badRequest("the request is over %d MiB", MaxCallRequest>>20)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		return CallRequest{}, badRequest("the request is not a JSON object of the call's fields: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return CallRequest{}, badRequest("the request is one JSON object; there is more after it")
	}
	if err := checkKeys(data); err != nil {
		return CallRequest{}, badRequest("%v", err)
	}
	return q, nil
}

// requestFields are CallRequest's JSON field names.
var requestFields = func() map[string]bool {
	fields := map[string]bool{}
	t := reflect.TypeFor[CallRequest]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		fields[name] = true
	}
	return fields
}()

// checkKeys checks the keys of data, a valid JSON document: the top
// object's are CallRequest's field names exactly, and no object names a
// key twice.
func checkKeys(data []byte) error {
	type frame struct {
		path    string          // where the object is: "", "args", "args.env"
		keys    map[string]bool // nil for an array
		wantKey bool            // an object's next token is a key
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	key := ""
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // the end: data was decoded already
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if k, ok := tok.(string); ok && top != nil && top.keys != nil && top.wantKey {
			name := k
			if top.path != "" {
				name = top.path + "." + k
			}
			if top.keys[k] {
				return fmt.Errorf("%q is given twice", name)
			}
			if len(stack) == 1 && !requestFields[k] {
				return fmt.Errorf("%q is not a field of the request (field names are lower case: target, module, method, args, ...)", k)
			}
			top.keys[k], top.wantKey, key = true, false, name
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{path: key, keys: map[string]bool{}, wantKey: true})
		case json.Delim('['):
			stack = append(stack, &frame{path: key})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) > 0 {
				top = stack[len(stack)-1]
				top.wantKey, key = top.keys != nil, top.path
			}
		default: // a value
			if top != nil {
				top.wantKey, key = top.keys != nil, top.path
			}
		}
	}
}

// Spec checks the request and returns the call it describes, with the
// defaults call's flags have. The error wraps ErrBadRequest.
func (q CallRequest) Spec() (CallSpec, error) {
	if q.Target == "" || q.Module == "" || q.Method == "" {
		return CallSpec{}, badRequest("the request needs target, module and method")
	}
	if len(q.Target) > MaxTarget {
		return CallSpec{}, badRequest("target: %d bytes, at most %d (name a group of the minions instead: @group)", len(q.Target), MaxTarget)
	}
	if len(q.Where) > MaxWhere {
		return CallSpec{}, badRequest("where: %d conditions, at most %d", len(q.Where), MaxWhere)
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
		if v > MaxWait {
			return spec, badRequest("%s: %s is more than %s, the longest a minion keeps a job", d.name, d.s, MaxWait)
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
