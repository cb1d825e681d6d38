package minion_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/certs/certstest"
	"github.com/overlordhq/overlord/minion"
	"github.com/overlordhq/overlord/minion/miniontest"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/builtin"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// counter is a module whose only method counts its runs, so a test can
// tell that a refused call never ran.
type counter struct{ runs *atomic.Int32 }

func (counter) Name() string { return "counter" }
func (counter) Doc() string  { return "counts" }
func (c counter) Methods() []*modules.Method {
	return []*modules.Method{{Name: "hit", Doc: "count one", Run: func(context.Context, modules.Args) (any, error) {
		return c.runs.Add(1), nil
	}}}
}

// registry returns the built-in modules plus counter.
func registry(t *testing.T, runs *atomic.Int32) *modules.Registry {
	t.Helper()
	r := builtin.Registry()
	if err := r.Add(counter{runs}); err != nil {
		t.Fatal(err)
	}
	return r
}

// serve starts the minion with identity id on loopback, stopped when
// the test ends. It returns its address.
func serve(t *testing.T, id *certs.Bundle, reg *modules.Registry) string {
	t.Helper()
	return miniontest.Serve(t, minion.Config{Bundle: id, Registry: reg}).Addr().String()
}

// dial returns a client using TLS configuration cfg that reaches the
// named minions at the given addresses.
func dial(t *testing.T, cfg *tls.Config, addrs map[string]string) *rpc.Client {
	t.Helper()
	c := rpc.NewClient(rpc.ClientConfig{
		TLS:            cfg,
		Resolve:        func(name string) (string, bool) { a, ok := addrs[name]; return a, ok },
		ConnectTimeout: 2 * time.Second,
	})
	t.Cleanup(c.Close)
	return c
}

type env struct {
	ca     *certstest.CA
	runs   *atomic.Int32
	addr   string // web1's address
	client *rpc.Client
}

// setup starts minion web1 and returns a client with an overlord identity
// of the same CA.
func setup(t *testing.T) *env {
	t.Helper()
	e := &env{ca: certstest.NewCA(t), runs: new(atomic.Int32)}
	e.addr = serve(t, e.ca.Minion("web1"), registry(t, e.runs))
	e.client = dial(t, certstest.ClientTLS(t, e.ca.Overlord("op")), map[string]string{"web1": e.addr})
	return e
}

func call(ctx context.Context, c *rpc.Client, name string, p rpc.CallParams) (rpc.CallReply, error) {
	var reply rpc.CallReply
	err := c.Call(ctx, name, "Minion.Call", p, &reply)
	return reply, err
}

func TestCall(t *testing.T) {
	e := setup(t)
	tests := []struct {
		name   string
		params rpc.CallParams
		want   string // JSON of the result
	}{
		{"ping", rpc.CallParams{Module: "test", Method: "ping"}, `true`},
		{"named args", rpc.CallParams{Module: "test", Method: "add", Args: map[string]any{"a": 1, "b": 2.5}}, `3.5`},
		{"positional args", rpc.CallParams{Module: "test", Method: "echo", Positional: []any{map[string]any{"k": []any{1, "x"}}}}, `{"k":[1,"x"]}`},
		{"mixed args", rpc.CallParams{Module: "test", Method: "add", Args: map[string]any{"b": 2}, Positional: []any{40}}, `42`},
		{"introspection", rpc.CallParams{Module: "system", Method: "list_modules"}, `["command","counter","facts","file","mount","package","process","service","sysctl","system","test"]`},
		{"command", rpc.CallParams{Module: "command", Method: "run", Positional: []any{"printf hello"}},
			`{"stdout":"hello","stderr":"","exit_code":0}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply, err := call(context.Background(), e.client, "web1", tt.params)
			if err != nil {
				t.Fatal(err)
			}
			got := string(reply.Result)
			if tt.params.Module == "command" {
				// duration_ms varies; compare the rest.
				var m map[string]any
				if err := json.Unmarshal(reply.Result, &m); err != nil {
					t.Fatal(err)
				}
				delete(m, "duration_ms")
				b, _ := json.Marshal(m)
				got = string(b)
				tt.want = `{"exit_code":0,"stderr":"","stdout":"hello"}`
			}
			if got != tt.want {
				t.Errorf("result %s, want %s", got, tt.want)
			}
			if reply.DurationMS < 0 {
				t.Errorf("duration_ms %d", reply.DurationMS)
			}
		})
	}
}

func TestCallErrors(t *testing.T) {
	e := setup(t)
	tests := []struct {
		name   string
		method string // RPC method; Minion.Call if empty
		params rpc.CallParams
		kind   status.Kind
		msg    string
	}{
		{name: "bad args type", params: rpc.CallParams{Module: "test", Method: "add", Args: map[string]any{"a": "one", "b": 2}},
			kind: status.KindBadArgs, msg: `add: parameter a: want float, got string "one"`},
		{name: "missing args", params: rpc.CallParams{Module: "test", Method: "echo"},
			kind: status.KindBadArgs, msg: "missing required parameter message"},
		{name: "too many args", params: rpc.CallParams{Module: "test", Method: "ping", Positional: []any{1}},
			kind: status.KindBadArgs, msg: "takes at most 0 argument(s)"},
		{name: "unknown parameter", params: rpc.CallParams{Module: "command", Method: "run", Args: map[string]any{"cmd": "true", "user": "root"}},
			kind: status.KindBadArgs, msg: `unknown parameter "user"`},
		{name: "negative timeout", params: rpc.CallParams{Module: "test", Method: "ping", TimeoutMS: -1},
			kind: status.KindBadArgs, msg: "timeout_ms must not be negative"},
		{name: "unknown module", params: rpc.CallParams{Module: "nosuch", Method: "ping"},
			kind: status.KindUnknownModule, msg: `no module "nosuch" (have: command, counter, facts, file, mount, package, process, service, sysctl, system, test)`},
		{name: "unknown method", params: rpc.CallParams{Module: "test", Method: "nosuch"},
			kind: status.KindUnknownMethod, msg: `module "test" has no method "nosuch"`},
		{name: "module error", params: rpc.CallParams{Module: "test", Method: "fail", Positional: []any{"on purpose"}},
			kind: status.KindModuleError, msg: "on purpose"},
		{name: "unknown RPC method", method: "Minion.Nope", params: rpc.CallParams{},
			kind: status.KindUnknownMethod, msg: "Minion.Nope"},
		{name: "ill-formed RPC method", method: "Minion.Call.x", params: rpc.CallParams{},
			kind: status.KindUnknownMethod, msg: "Minion.Call.x"},
		{name: "unknown RPC service", method: "Other.Call", params: rpc.CallParams{},
			kind: status.KindUnknownMethod, msg: "Other.Call"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = "Minion.Call"
			}
			var reply rpc.CallReply
			err := e.client.Call(context.Background(), "web1", method, tt.params, &reply)
			var se *status.Error
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T), want a *status.Error", err, err)
			}
			if se.Kind != tt.kind || !strings.Contains(se.Message, tt.msg) {
				t.Errorf("error %v, want %s saying %q", se, tt.kind, tt.msg)
			}
			var re *rpc.ResultError
			if errors.As(err, &re) {
				t.Errorf("error carries a result %s; none was returned", re.Result)
			}
		})
	}
}

// A command that exits non-zero fails with module_error and still brings
// its output back.
func TestCallResultError(t *testing.T) {
	e := setup(t)
	_, err := call(context.Background(), e.client, "web1", rpc.CallParams{Module: "command", Method: "run",
		Positional: []any{"echo partial output; echo why >&2; exit 3"}})
	var re *rpc.ResultError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T), want *rpc.ResultError", err, err)
	}
	if status.KindOf(err) != status.KindModuleError || !strings.Contains(re.Err.Message, "exit status 3") {
		t.Errorf("error %v, want module_error saying exit status 3", err)
	}
	var res struct {
		Stdout   string `json:"stdout"`
		Stderr   string `json:"stderr"`
		ExitCode int    `json:"exit_code"`
	}
	if err := json.Unmarshal(re.Result, &res); err != nil {
		t.Fatalf("result %s: %v", re.Result, err)
	}
	if res.Stdout != "partial output\n" || res.Stderr != "why\n" || res.ExitCode != 3 {
		t.Errorf("result %+v", res)
	}
}

func TestCallTimeouts(t *testing.T) {
	e := setup(t)
	t.Run("minion enforces timeout_ms", func(t *testing.T) {
		start := time.Now()
		_, err := call(context.Background(), e.client, "web1", rpc.CallParams{Module: "test", Method: "sleep", Positional: []any{30}, TimeoutMS: 100})
		if status.KindOf(err) != status.KindTimeout {
			t.Errorf("error %v, want kind timeout", err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("took %s", took)
		}
	})
	t.Run("command killed with its output", func(t *testing.T) {
		_, err := call(context.Background(), e.client, "web1", rpc.CallParams{Module: "command", Method: "run",
			Positional: []any{"echo started; sleep 30"}, TimeoutMS: 300})
		var re *rpc.ResultError
		if !errors.As(err, &re) || re.Err.Kind != status.KindTimeout {
			t.Fatalf("error %v (%T), want a timeout with a result", err, err)
		}
		if !strings.Contains(string(re.Result), `"stdout":"started\n"`) {
			t.Errorf("result %s lacks the output so far", re.Result)
		}
	})
	t.Run("caller deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := call(ctx, e.client, "web1", rpc.CallParams{Module: "test", Method: "sleep", Positional: []any{30}})
		if status.KindOf(err) != status.KindTimeout {
			t.Errorf("error %v, want kind timeout", err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("took %s", took)
		}
	})
	t.Run("caller cancels", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err := call(ctx, e.client, "web1", rpc.CallParams{Module: "test", Method: "sleep", Positional: []any{30}})
		if status.KindOf(err) != status.KindCancelled {
			t.Errorf("error %v, want kind cancelled", err)
		}
	})
}

func TestDescribe(t *testing.T) {
	e := setup(t)
	var reply rpc.DescribeReply
	if err := e.client.Call(context.Background(), "web1", "Minion.Describe", rpc.DescribeParams{}, &reply); err != nil {
		t.Fatal(err)
	}
	if reply.Name != "web1" || reply.Version == "" {
		t.Errorf("name %q version %q", reply.Name, reply.Version)
	}
	var names []string
	var run *modules.MethodInfo
	for _, m := range reply.Modules {
		names = append(names, m.Name)
		if m.Name == "command" {
			for i := range m.Methods {
				if m.Methods[i].Name == "run" {
					run = &m.Methods[i]
				}
			}
		}
	}
	if strings.Join(names, ",") != "command,counter,facts,file,mount,package,process,service,sysctl,system,test" {
		t.Errorf("modules %v", names)
	}
	if run == nil {
		t.Fatal("command.run not described")
	}
	params := map[string]modules.Param{}
	for _, p := range run.Params {
		params[p.Name] = p
	}
	if p := params["cmd"]; p.Type != "string|list" || !p.Required {
		t.Errorf("cmd described as %+v", p)
	}
	if p := params["timeout"]; p.Type != modules.Duration || p.Required {
		t.Errorf("timeout described as %+v", p)
	}
	if p := params["max_output"]; p.Default != float64(1<<20) {
		t.Errorf("max_output default %#v, want %d", p.Default, 1<<20)
	}
}

// TestTLS checks both ends of the mutual TLS: each case is refused with
// kind tls, and the method never runs.
func TestTLS(t *testing.T) {
	ca := certstest.NewCA(t)
	other := certstest.NewCA(t)
	runs := new(atomic.Int32)
	web1 := serve(t, ca.Minion("web1"), registry(t, runs))
	web2 := serve(t, ca.Minion("web2"), registry(t, runs))
	good := certstest.ClientTLS(t, ca.Overlord("op"))

	clientCert := func(b *certs.Bundle) *tls.Config {
		return certs.ClientConfig(certstest.TLSCert(t, b), ca.Pool())
	}
	tests := []struct {
		name  string
		cfg   *tls.Config
		addrs map[string]string
		msg   string
	}{
		{"client trusts another CA", certstest.ClientTLS(t, other.Overlord("op")),
			map[string]string{"web1": web1}, "certificate"},
		{"client identity of another CA", clientCert(other.Overlord("op")),
			map[string]string{"web1": web1}, "tls"},
		{"server names another minion", good,
			map[string]string{"web1": web2}, "web2"},
		{"no client certificate", certs.ClientConfig(tls.Certificate{}, ca.Pool()),
			map[string]string{"web1": web1}, "tls"},
		{"minion certificate as client", clientCert(ca.Minion("web9")),
			map[string]string{"web1": web1}, "tls"},
		{"client-auth certificate with the minion role", clientCert(ca.Sign(&x509.Certificate{
			Subject: certstest.Subject("sneaky", certs.RoleMinion), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})),
			map[string]string{"web1": web1}, "tls"},
		{"client-auth certificate without a role", clientCert(ca.Sign(&x509.Certificate{
			Subject: certstest.Subject("nobody", ""), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})),
			map[string]string{"web1": web1}, "tls"},
		{"expired client certificate", clientCert(ca.Sign(&x509.Certificate{
			Subject: certstest.Subject("op", certs.RoleOverlord), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})),
			map[string]string{"web1": web1}, "tls"},
		{"TLS 1.2 client", func() *tls.Config {
			c := good.Clone()
			c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return c
		}(),
			map[string]string{"web1": web1}, "tls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := runs.Load()
			c := dial(t, tt.cfg, tt.addrs)
			_, err := call(context.Background(), c, "web1", rpc.CallParams{Module: "counter", Method: "hit"})
			if status.KindOf(err) != status.KindTLS {
				t.Fatalf("error %v, want kind tls", err)
			}
			t.Logf("refused: %v", err)
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
			if runs.Load() != before {
				t.Error("the method ran")
			}
		})
	}

	t.Run("good client", func(t *testing.T) {
		c := dial(t, good, map[string]string{"web1": web1, "web2": web2})
		for _, name := range []string{"web1", "web2"} {
			if _, err := call(context.Background(), c, name, rpc.CallParams{Module: "counter", Method: "hit"}); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
}

// A server whose certificate is of the CA but carries the overlord role
// (server auth usage, wrong role) is refused by the client.
func TestTLSServerWithoutMinionRole(t *testing.T) {
	ca := certstest.NewCA(t)
	bad := ca.Sign(&x509.Certificate{Subject: certstest.Subject("web1", certs.RoleOverlord), DNSNames: []string{"web1"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	h, err := rpc.NewServer(map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(h)
	ts.TLS = certstest.ServerTLS(t, bad)
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	defer ts.Close()
	c := dial(t, certstest.ClientTLS(t, ca.Overlord("op")), map[string]string{"web1": ts.Listener.Addr().String()})
	_, err = call(context.Background(), c, "web1", rpc.CallParams{Module: "test", Method: "ping"})
	if status.KindOf(err) != status.KindTLS || !strings.Contains(err.Error(), "role overlord, want minion") {
		t.Errorf("error %v, want tls about the role", err)
	}
}

func TestUnreachable(t *testing.T) {
	ca := certstest.NewCA(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	c := dial(t, certstest.ClientTLS(t, ca.Overlord("op")), map[string]string{"web1": closed})
	tests := []struct {
		name, minion, msg string
	}{
		{"closed port", "web1", "connection refused"},
		{"no registered address", "web9", "web9 has no registered address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := call(context.Background(), c, tt.minion, rpc.CallParams{Module: "test", Method: "ping"})
			if status.KindOf(err) != status.KindUnreachable || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %v, want unreachable saying %q", err, tt.msg)
			}
		})
	}
}

// A peer that accepts the connection but never answers the handshake
// runs into the connect timeout, classed as timeout or unreachable, never
// hanging.
func TestSilentPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 16)
	go func() {
		defer close(conns)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- conn // hold it open, say nothing
		}
	}()
	defer func() {
		ln.Close()
		for conn := range conns {
			conn.Close()
		}
	}()
	ca := certstest.NewCA(t)
	c := rpc.NewClient(rpc.ClientConfig{
		TLS:            certstest.ClientTLS(t, ca.Overlord("op")),
		Resolve:        func(string) (string, bool) { return ln.Addr().String(), true },
		ConnectTimeout: 200 * time.Millisecond,
	})
	defer c.Close()
	start := time.Now()
	_, err = call(context.Background(), c, "web1", rpc.CallParams{Module: "test", Method: "ping"})
	if k := status.KindOf(err); k != status.KindTimeout && k != status.KindUnreachable {
		t.Errorf("error %v, want timeout or unreachable", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s with a 200ms connect timeout", took)
	}
}
