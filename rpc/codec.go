package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"

	"github.com/gorilla/rpc/v2"
	"github.com/gorilla/rpc/v2/json2"

	"github.com/overlordhq/overlord/status"
)

// strictCodec is gorilla's json2 codec with two additions: params must not
// carry fields the method does not take (a misspelt "timeout" must not
// silently become the default), and every error it writes carries a
// kind in data, including the ones json2 makes itself (unreadable JSON,
// an invalid request, a body over the size limit).
type strictCodec struct {
	inner *json2.Codec
}

func newStrictCodec() strictCodec {
	return strictCodec{inner: json2.NewCustomCodecWithErrorMapper(rpc.DefaultEncoderSelector, mapError)}
}

// NewRequest implements rpc.Codec.
func (c strictCodec) NewRequest(r *http.Request) rpc.CodecRequest {
	var body []byte
	var readErr error
	if r.ContentLength > MaxRequestBytes {
		// Refuse what is announced too big without reading any of it.
		readErr = &http.MaxBytesError{Limit: MaxRequestBytes}
	} else {
		buf := bytes.NewBuffer(make([]byte, 0, max(r.ContentLength, 0)+bytes.MinRead))
		_, readErr = buf.ReadFrom(r.Body)
		body = buf.Bytes()
	}
	if readErr != nil {
		body = nil // json2 need not parse what will be refused anyway
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	req := &strictRequest{CodecRequest: c.inner.NewRequest(r), ctx: r.Context()}
	if readErr != nil {
		var tooBig *http.MaxBytesError
		msg := readErr.Error()
		if errors.As(readErr, &tooBig) {
			msg = fmt.Sprintf("request body over %d bytes", tooBig.Limit)
		}
		// E_PARSE: json2 answers a request it could not read, id or not.
		req.err = &json2.Error{Code: json2.E_PARSE, Message: msg, Data: ErrorData{Kind: status.KindBadArgs}}
		return req
	}
	if depth := jsonDepth(body); depth > MaxDepth {
		req.err = &json2.Error{Code: json2.E_PARSE, Message: fmt.Sprintf("request nested %d deep, at most %d", depth, MaxDepth), Data: ErrorData{Kind: status.KindBadArgs}}
		return req
	}
	var envelope struct {
		Params json.RawMessage `json:"params"`
	}
	if json.Unmarshal(body, &envelope) == nil {
		req.params = envelope.Params
	}
	return req
}

type strictRequest struct {
	rpc.CodecRequest
	ctx    context.Context // the HTTP request's
	params json.RawMessage
	err    error // the body could not be read
}

// WriteResponse implements rpc.CodecRequest. An answer nobody waits for
// any more (the client gave up, and may be asking again) is not encoded:
// it may be hundreds of MiB of JSON.
func (r *strictRequest) WriteResponse(w http.ResponseWriter, reply any) {
	if r.ctx.Err() != nil {
		return
	}
	r.CodecRequest.WriteResponse(w, reply)
}

// Method implements rpc.CodecRequest.
func (r *strictRequest) Method() (string, error) {
	if r.err != nil {
		return "", r.err
	}
	return r.CodecRequest.Method()
}

// ReadRequest implements rpc.CodecRequest, refusing unknown fields.
func (r *strictRequest) ReadRequest(args any) error {
	if r.err != nil {
		return r.err
	}
	if err := r.CodecRequest.ReadRequest(args); err != nil {
		return err
	}
	params := bytes.TrimSpace(r.params)
	if len(params) > 0 && params[0] == '[' {
		var list []json.RawMessage
		if json.Unmarshal(params, &list) != nil || len(list) != 1 {
			return &json2.Error{Code: json2.E_BAD_PARAMS, Message: "params: want one object", Data: ErrorData{Kind: status.KindBadArgs}}
		}
		params = list[0]
	}
	if len(params) == 0 || string(params) == "null" {
		return nil
	}
	fresh := reflect.New(reflect.TypeOf(args).Elem()).Interface()
	dec := json.NewDecoder(bytes.NewReader(params))
	dec.DisallowUnknownFields()
	if err := dec.Decode(fresh); err != nil {
		return &json2.Error{Code: json2.E_BAD_PARAMS, Message: "params: " + err.Error(), Data: ErrorData{Kind: status.KindBadArgs}}
	}
	return nil
}

// WriteError implements rpc.CodecRequest, giving every error a kind and
// never echoing the request back.
func (r *strictRequest) WriteError(w http.ResponseWriter, code int, err error) {
	var je *json2.Error
	if errors.As(err, &je) {
		if _, ok := je.Data.(ErrorData); !ok {
			kind := status.KindInternal
			switch je.Code {
			case json2.E_PARSE, json2.E_INVALID_REQ, json2.E_BAD_PARAMS:
				kind = status.KindBadArgs
			case json2.E_NO_METHOD:
				kind = status.KindUnknownMethod
			}
			err = &json2.Error{Code: je.Code, Message: je.Message, Data: ErrorData{Kind: kind}}
		}
	}
	r.CodecRequest.WriteError(w, code, err)
}

// MaxDepth bounds how deeply a request's JSON may nest.
const MaxDepth = 64

// jsonDepth returns the deepest nesting of objects and arrays in data,
// which need not be valid JSON: it only skips over strings.
func jsonDepth(data []byte) int {
	depth, deepest, inString, escaped := 0, 0, false, false
	for _, c := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}
