package rpc_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/rpc/v2/json2"

	"github.com/overlordhq/overlord/certs/certstest"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

func TestNewError(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		result any
		code   json2.ErrorCode
		kind   status.Kind
		msg    string
		data   string // JSON of data.result, if any
	}{
		{"bad_args", status.Errorf(status.KindBadArgs, "x: missing"), nil, json2.E_BAD_PARAMS, status.KindBadArgs, "x: missing", ""},
		{"internal", status.Errorf(status.KindInternal, "oops"), nil, json2.E_INTERNAL, status.KindInternal, "oops", ""},
		{"unknown_module", status.Errorf(status.KindUnknownModule, "m"), nil, rpc.CodeUnknownModule, status.KindUnknownModule, "m", ""},
		{"unknown_method", status.Errorf(status.KindUnknownMethod, "m"), nil, rpc.CodeUnknownMethod, status.KindUnknownMethod, "m", ""},
		{"module_error with result", status.Errorf(status.KindModuleError, "exit 3"), map[string]int{"exit_code": 3},
			rpc.CodeModuleError, status.KindModuleError, "exit 3", `{"exit_code":3}`},
		{"denied", status.Errorf(status.KindDenied, "no"), nil, rpc.CodeDenied, status.KindDenied, "no", ""},
		{"timeout", status.Errorf(status.KindTimeout, "slow"), nil, rpc.CodeTimeout, status.KindTimeout, "slow", ""},
		{"cancelled", status.Errorf(status.KindCancelled, "stop"), nil, rpc.CodeCancelled, status.KindCancelled, "stop", ""},
		{"lost", status.Errorf(status.KindLost, "gone"), nil, rpc.CodeLost, status.KindLost, "gone", ""},
		{"wrapped", fmt.Errorf("ctx: %w", status.Errorf(status.KindDenied, "no")), nil, rpc.CodeDenied, status.KindDenied, "no", ""},
		{"plain error", errors.New("boom"), nil, json2.E_INTERNAL, status.KindInternal, "boom", ""},
		{"unencodable result", status.Errorf(status.KindModuleError, "x"), func() {}, rpc.CodeModuleError, status.KindModuleError, "x", ""},
		{"kind only the client side knows", status.Errorf(status.KindTLS, "x"), nil, json2.E_SERVER, status.KindTLS, "x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			je := rpc.NewError(tt.err, tt.result)
			if je.Code != tt.code || je.Message != tt.msg {
				t.Errorf("code %d message %q, want %d %q", je.Code, je.Message, tt.code, tt.msg)
			}
			data, ok := je.Data.(rpc.ErrorData)
			if !ok {
				t.Fatalf("data is %T", je.Data)
			}
			if data.Kind != tt.kind || string(data.Result) != tt.data {
				t.Errorf("data %+v (result %s), want kind %s result %s", data, data.Result, tt.kind, tt.data)
			}
		})
	}
}

// The codes are distinct, so a client without data.kind can still map a
// code back to its kind.
func TestCodesDistinct(t *testing.T) {
	codes := []json2.ErrorCode{rpc.CodeBadArgs, rpc.CodeInternal, rpc.CodeUnknownModule, rpc.CodeUnknownMethod,
		rpc.CodeModuleError, rpc.CodeDenied, rpc.CodeTimeout, rpc.CodeCancelled, rpc.CodeLost}
	seen := map[json2.ErrorCode]bool{}
	for _, c := range codes {
		if seen[c] {
			t.Errorf("code %d used twice", c)
		}
		seen[c] = true
	}
}

func TestClassify(t *testing.T) {
	expired, cancelled := context.WithTimeout(context.Background(), -time.Second)
	defer cancelled()
	live := context.Background()
	urlErr := func(err error) error { return &url.Error{Op: "Post", URL: "https://web1/rpc", Err: err} }
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		kind status.Kind
		msg  string
	}{
		{"status error passes", live, status.Errorf(status.KindDenied, "no"), status.KindDenied, "no"},
		{"connect timeout", live, urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: context.DeadlineExceeded}), status.KindUnreachable, "dial"},
		{"ctx past deadline", expired, urlErr(errors.New("read: connection reset")), status.KindTimeout, "connection reset"},
		{"cancelled", live, urlErr(context.Canceled), status.KindCancelled, "context canceled"},
		{"refused", live, urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), status.KindUnreachable, "connection refused"},
		{"no route", live, errors.New("dial tcp: no route to host"), status.KindUnreachable, "no route"},
		{"unknown authority", live, urlErr(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), status.KindTLS, ""},
		{"hostname", live, urlErr(x509.HostnameError{Certificate: &x509.Certificate{DNSNames: []string{"web2"}}, Host: "web1"}), status.KindTLS, "web1"},
		{"alert", live, urlErr(tls.AlertError(42)), status.KindTLS, ""},
		{"record header", live, urlErr(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), status.KindTLS, "TLS handshake"},
		{"remote alert text", live, urlErr(errors.New("remote error: tls: bad certificate")), status.KindTLS, "bad certificate"},
		{"remote alert op", live, urlErr(&net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}), status.KindTLS, "certificate required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			se := rpc.Classify(tt.ctx, tt.err)
			if se.Kind != tt.kind || !strings.Contains(se.Message, tt.msg) {
				t.Errorf("Classify = %v, want %s saying %q", se, tt.kind, tt.msg)
			}
			if strings.Contains(se.Message, "https://web1/rpc") {
				t.Errorf("message %q repeats the URL wrapper", se.Message)
			}
		})
	}
}

// Echo is a JSON-RPC service for the server and client tests.
type Echo struct{}

type EchoArgs struct {
	Text string `json:"text"`
	Fail string `json:"fail"` // a kind to fail with
	Sent bool   `json:"with_result"`
}

type EchoReply struct {
	Text string `json:"text"`
}

func (Echo) Say(_ *http.Request, a *EchoArgs, r *EchoReply) error {
	if a.Fail != "" {
		var res any
		if a.Sent {
			res = map[string]string{"partial": a.Text}
		}
		return rpc.NewError(status.Errorf(status.Kind(a.Fail), "failed: %s", a.Text), res)
	}
	r.Text = a.Text
	return nil
}

func (Echo) Plain(_ *http.Request, _ *EchoArgs, _ *EchoReply) error {
	return errors.New("plain failure")
}

func (Echo) Status(_ *http.Request, _ *EchoArgs, _ *EchoReply) error {
	return status.Errorf(status.KindDenied, "returned as a status error")
}

// serve starts handler h behind TLS with a minion identity named web1 and
// returns a client that reaches web1 there.
func serve(t *testing.T, h http.Handler) *rpc.Client {
	t.Helper()
	ca := certstest.NewCA(t)
	ts := httptest.NewUnstartedServer(h)
	ts.TLS = certstest.ServerTLS(t, ca.Minion("web1"))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	addr := ts.Listener.Addr().String()
	c := rpc.NewClient(rpc.ClientConfig{
		TLS:     certstest.ClientTLS(t, ca.Overlord("op")),
		Resolve: func(name string) (string, bool) { return addr, name == "web1" },
	})
	t.Cleanup(c.Close)
	return c
}

func TestClientServer(t *testing.T) {
	h, err := rpc.NewServer(map[string]any{"Echo": Echo{}})
	if err != nil {
		t.Fatal(err)
	}
	c := serve(t, h)
	tests := []struct {
		name       string
		method     string
		args       EchoArgs
		want       string
		kind       status.Kind
		msg        string
		withResult string
	}{
		{name: "ok", method: "Echo.Say", args: EchoArgs{Text: "hi"}, want: "hi"},
		{name: "unicode", method: "Echo.Say", args: EchoArgs{Text: "héllo\n\x00✓"}, want: "héllo\n\x00✓"},
		{name: "kind travels", method: "Echo.Say", args: EchoArgs{Text: "x", Fail: "denied"}, kind: status.KindDenied, msg: "failed: x"},
		{name: "result travels", method: "Echo.Say", args: EchoArgs{Text: "so far", Fail: "module_error", Sent: true},
			kind: status.KindModuleError, msg: "failed: so far", withResult: `{"partial":"so far"}`},
		{name: "status error returned directly", method: "Echo.Status", kind: status.KindDenied, msg: "returned as a status error"},
		{name: "plain error is internal", method: "Echo.Plain", kind: status.KindInternal, msg: "plain failure"},
		{name: "unknown method", method: "Echo.Nope", kind: status.KindUnknownMethod, msg: "Echo.Nope"},
		{name: "unknown service", method: "Nope.Say", kind: status.KindUnknownMethod, msg: "Nope.Say"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reply EchoReply
			err := c.Call(context.Background(), "web1", tt.method, tt.args, &reply)
			if tt.kind == "" {
				if err != nil || reply.Text != tt.want {
					t.Errorf("reply %q, %v; want %q", reply.Text, err, tt.want)
				}
				return
			}
			var se *status.Error
			if !errors.As(err, &se) || se.Kind != tt.kind || !strings.Contains(se.Message, tt.msg) {
				t.Fatalf("error %v, want %s saying %q", err, tt.kind, tt.msg)
			}
			var re *rpc.ResultError
			switch {
			case tt.withResult == "" && errors.As(err, &re):
				t.Errorf("unexpected result %s", re.Result)
			case tt.withResult != "" && !errors.As(err, &re):
				t.Errorf("error %T carries no result", err)
			case tt.withResult != "" && string(re.Result) != tt.withResult:
				t.Errorf("result %s, want %s", re.Result, tt.withResult)
			}
		})
	}
}

// A JSON-RPC error without data.kind (another implementation, an old
// minion) is classified by its code.
func TestClientKindFromCode(t *testing.T) {
	tests := []struct {
		code int
		kind status.Kind
	}{
		{-32602, status.KindBadArgs},
		{-32001, status.KindUnknownModule},
		{-32003, status.KindModuleError},
		{-32005, status.KindTimeout},
		{-32000, status.KindInternal},
		{-32700, status.KindInternal},
		{12345, status.KindInternal},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			c := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"jsonrpc":"2.0","error":{"code":%d,"message":"m"},"id":1}`, tt.code)
			}))
			err := c.Call(context.Background(), "web1", "X.Y", struct{}{}, &struct{}{})
			if status.KindOf(err) != tt.kind {
				t.Errorf("error %v, want kind %s", err, tt.kind)
			}
		})
	}
}

func TestClientBadResponses(t *testing.T) {
	tests := []struct {
		name string
		h    http.HandlerFunc
		kind status.Kind
		msg  string
	}{
		{"HTTP error page", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "proxy says no", http.StatusBadGateway)
		}, status.KindInternal, "minion answered HTTP 502 Bad Gateway: proxy says no"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := serve(t, tt.h)
			err := c.Call(context.Background(), "web1", "Echo.Say", EchoArgs{}, &EchoReply{})
			var se *status.Error
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T) is not a *status.Error", err, err)
			}
			if se.Kind != tt.kind || !strings.Contains(se.Message, tt.msg) {
				t.Errorf("error %v, want %s saying %q", se, tt.kind, tt.msg)
			}
		})
	}
}

// A minion that answered, but not with JSON-RPC, was reached: its failure
// is internal, not "unreachable" (which also keeps it from being marked as
// seen).
func TestClientGarbageResponse(t *testing.T) {
	for name, body := range map[string]string{
		"html":           "<html>",
		"empty":          "",
		"empty object":   "{}",
		"list":           "[1,2]",
		"error a string": `{"id":1,"error":"no"}`,
	} {
		t.Run(name, func(t *testing.T) {
			c := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, body)
			}))
			err := c.Call(context.Background(), "web1", "Echo.Say", EchoArgs{}, &EchoReply{})
			if err == nil {
				t.Fatal("no error")
			}
			if k := status.KindOf(err); k != status.KindInternal {
				t.Errorf("a minion answering HTTP 200 with a body that is not JSON-RPC (%q) is classified %q (%v); want internal", body, k, err)
			}
		})
	}
}

// One Client reuses its connections across calls (keep-alive).
func TestClientReusesConnections(t *testing.T) {
	h, err := rpc.NewServer(map[string]any{"Echo": Echo{}})
	if err != nil {
		t.Fatal(err)
	}
	ca := certstest.NewCA(t)
	ts := httptest.NewUnstartedServer(h)
	ts.TLS = certstest.ServerTLS(t, ca.Minion("web1"))
	var conns atomic.Int32
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	ts.StartTLS()
	defer ts.Close()
	addr := ts.Listener.Addr().String()
	c := rpc.NewClient(rpc.ClientConfig{TLS: certstest.ClientTLS(t, ca.Overlord("op")),
		Resolve: func(string) (string, bool) { return addr, true }})
	defer c.Close()
	for i := range 10 {
		var reply EchoReply
		if err := c.Call(context.Background(), "web1", "Echo.Say", EchoArgs{Text: fmt.Sprint(i)}, &reply); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 10 sequential calls, want 1", n)
	}
}

func TestDeepRequestRefused(t *testing.T) {
	h, err := rpc.NewServer(map[string]any{"Echo": new(Echo)})
	if err != nil {
		t.Fatal(err)
	}
	deep := strings.Repeat("[", 100) + strings.Repeat("]", 100)
	body := `{"jsonrpc":"2.0","method":"Echo.Say","id":1,"params":{"text":` + deep + `}}`
	req := httptest.NewRequest("POST", rpc.Path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	if !strings.Contains(rr.Body.String(), "nested 102 deep") || !strings.Contains(rr.Body.String(), `"kind":"bad_args"`) {
		t.Errorf("a request nested 102 deep: %s", rr.Body.String())
	}
}
