// Package enrolment is the wire between a minion that enrols online and
// the overlord's enrolment endpoint (`overlord serve`): join tokens, the
// request and reply of POST /v1/enrol, and the client a minion uses.
//
// # Protocol
//
// The minion makes its key and a certificate signing request (CSR)
// locally and POSTs a Request over HTTPS. The endpoint answers with a
// Reply: "signed" (HTTP 200) with the certificate and the CA certificate,
// or "pending" (HTTP 202) until an operator signs or rejects it. Asking
// again with a CSR for the same key is how a minion polls: the answer is
// the request's current state. Failures are an ErrorReply with a stable
// kind (HTTP 4xx/5xx).
//
// # Verifying the endpoint
//
// The minion has no CA certificate yet, only the CA's SHA-256 fingerprint
// (from the join token, or given by the operator). The endpoint presents
// its certificate and the CA certificate; the client accepts the
// connection only if one certificate of the chain is a self-signed CA
// with that fingerprint, the endpoint's certificate chains to it, allows
// server authentication and carries the endpoint role. Host names are not
// checked: the pinned CA and the role say who the endpoint is, whatever
// its address. A minion certificate, of the same CA, is refused as an
// endpoint, so a compromised minion cannot collect tokens.
package enrolment

import (
	"errors"
	"fmt"
	"net/http"
)

// Path is where the endpoint takes requests.
const Path = "/v1/enrol"

// DefaultPort is the enrolment endpoint's default port.
const DefaultPort = 51235

// MaxRequestBytes bounds a request body; MaxReplyBytes a reply body.
const (
	MaxRequestBytes = 64 << 10
	MaxReplyBytes   = 1 << 20
)

// States of a request.
const (
	StatePending  = "pending"
	StateSigned   = "signed"
	StateRejected = "rejected"
	StateRevoked  = "revoked"
)

// Request is the body of POST /v1/enrol.
type Request struct {
	Name string `json:"name"` // the minion's name, its certificate's only DNS name
	Addr string `json:"addr"` // HOST:PORT where the overlord will reach it
	CSR  string `json:"csr"`  // PEM CERTIFICATE REQUEST
	// Token is a join token; without one the request waits for an
	// operator.
	Token string `json:"token,omitempty"`
}

// Reply is the endpoint's answer to a request it took.
type Reply struct {
	State          string `json:"state"` // pending or signed
	Name           string `json:"name"`
	KeyFingerprint string `json:"key_fingerprint"` // SHA-256 of the request's public key
	// Certificate and CA are PEM, set when State is signed.
	Certificate string `json:"certificate,omitempty"`
	CA          string `json:"ca,omitempty"`
	Message     string `json:"message,omitempty"`
}

// ErrorReply is the endpoint's answer to a request it refused.
type ErrorReply struct {
	Error *Error `json:"error"`
}

// Error kinds, stable on the wire.
const (
	KindBadRequest   = "bad_request"
	KindTokenInvalid = "token_invalid"
	KindTokenExpired = "token_expired"
	KindTokenUsedUp  = "token_used_up"
	KindRejected     = "rejected"
	KindRevoked      = "revoked"
	KindConflict     = "conflict"
	KindBusy         = "busy"
	KindInternal     = "internal"
)

// Error is a refusal by the endpoint, with a stable kind.
type Error struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Is makes errors.Is(err, ErrTokenExpired) and the like match any *Error
// of the same kind.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Kind == e.Kind && t.Message == ""
}

// Sentinels for errors.Is; an endpoint's errors carry their own messages.
var (
	ErrTokenInvalid = &Error{Kind: KindTokenInvalid}
	ErrTokenExpired = &Error{Kind: KindTokenExpired}
	ErrTokenUsedUp  = &Error{Kind: KindTokenUsedUp}
	ErrRejected     = &Error{Kind: KindRejected}
	ErrRevoked      = &Error{Kind: KindRevoked}
	ErrConflict     = &Error{Kind: KindConflict}
	ErrBusy         = &Error{Kind: KindBusy}
	ErrBadRequest   = &Error{Kind: KindBadRequest}
)

// Errorf returns an *Error of kind.
func Errorf(kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// HTTPStatus is the HTTP status an error of kind is sent with.
func HTTPStatus(kind string) int {
	switch kind {
	case KindBadRequest:
		return http.StatusBadRequest
	case KindTokenInvalid, KindTokenExpired, KindTokenUsedUp, KindRejected, KindRevoked:
		return http.StatusForbidden
	case KindConflict:
		return http.StatusConflict
	case KindBusy:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
