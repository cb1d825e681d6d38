package minion_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/certs/certstest"
	"github.com/overlordhq/overlord/minion"
	"github.com/overlordhq/overlord/minion/miniontest"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

func TestServerLifecycle(t *testing.T) {
	ca := certstest.NewCA(t)
	srv, err := minion.New(minion.Config{StateDir: t.TempDir(), Bundle: ca.Minion("web1"), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Name() != "web1" {
		t.Errorf("Name = %q", srv.Name())
	}
	if err := srv.Close(context.Background()); err != nil {
		t.Errorf("Close before Open: %v", err)
	}
	if err := srv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr().String()
	c := dial(t, certstest.ClientTLS(t, ca.Overlord("op")), map[string]string{"web1": addr})
	if _, err := call(context.Background(), c, "web1", rpc.CallParams{Module: "test", Method: "ping"}); err != nil {
		t.Fatalf("call the open server: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case <-srv.Done():
	default:
		t.Error("Done not closed after Close")
	}
	if err := srv.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
	c.Close()
	_, err = call(context.Background(), c, "web1", rpc.CallParams{Module: "test", Method: "ping"})
	if status.KindOf(err) != status.KindUnreachable {
		t.Errorf("call after Close: %v, want unreachable", err)
	}
}

// gate is a module whose method reports that it started and then holds
// until released, so a test knows a call is in flight without sleeping.
type gate struct{ started, release chan struct{} }

func (gate) Name() string { return "gate" }
func (gate) Doc() string  { return "holds a call open" }
func (g gate) Methods() []*modules.Method {
	return []*modules.Method{{Name: "hold", Doc: "wait for release", Run: func(ctx context.Context, _ modules.Args) (any, error) {
		close(g.started)
		select {
		case <-g.release:
			return true, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}}}
}

// Close lets a call in flight finish within its grace period.
func TestServerCloseDrains(t *testing.T) {
	ca := certstest.NewCA(t)
	g := gate{started: make(chan struct{}), release: make(chan struct{})}
	reg := modules.NewRegistry()
	if err := reg.Add(g); err != nil {
		t.Fatal(err)
	}
	srv, err := minion.New(minion.Config{StateDir: t.TempDir(), Bundle: ca.Minion("web1"), Listen: "127.0.0.1:0", Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			close(g.release)
		}
	}
	defer release()
	addr := srv.Addr().String()
	c := dial(t, certstest.ClientTLS(t, ca.Overlord("op")), map[string]string{"web1": addr})
	done := make(chan error, 1)
	go func() {
		_, err := call(context.Background(), c, "web1", rpc.CallParams{Module: "gate", Method: "hold"})
		done <- err
	}()
	select {
	case <-g.started:
	case err := <-done:
		t.Fatalf("call ended before it started: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not start within 10s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- srv.Close(ctx) }()
	// Close stops listening first; only then is the call released, so it
	// is surely in flight while Close drains.
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("the minion still accepted connections 10s after Close began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a call was in flight", err)
	default:
	}
	release()
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("call in flight during Close: %v", err)
	}
}

func TestServerOpenBusyPort(t *testing.T) {
	ca := certstest.NewCA(t)
	first, err := minion.New(minion.Config{StateDir: t.TempDir(), Bundle: ca.Minion("web1"), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer first.Close(context.Background())
	second, err := minion.New(minion.Config{StateDir: t.TempDir(), Bundle: ca.Minion("web1"), Listen: first.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Open(context.Background()); err == nil {
		second.Close(context.Background())
		t.Error("Open on a busy port succeeded")
	}
}

func TestNew(t *testing.T) {
	ca := certstest.NewCA(t)
	t.Run("no identity", func(t *testing.T) {
		dir := t.TempDir()
		_, err := minion.New(minion.Config{StateDir: dir})
		if err == nil || !strings.Contains(err.Error(), "minion init --bundle") || !strings.Contains(err.Error(), dir) {
			t.Errorf("New = %v, want a hint to run minion init", err)
		}
	})
	t.Run("overlord identity", func(t *testing.T) {
		_, err := minion.New(minion.Config{StateDir: t.TempDir(), Bundle: ca.Overlord("op")})
		if err == nil || !strings.Contains(err.Error(), `role "overlord", not minion`) {
			t.Errorf("New = %v, want a role refusal", err)
		}
	})
	t.Run("from state dir", func(t *testing.T) {
		dir := t.TempDir()
		if err := minion.Identity(dir).Install(ca.Minion("web3")); err != nil {
			t.Fatal(err)
		}
		srv, err := minion.New(minion.Config{StateDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if srv.Name() != "web3" {
			t.Errorf("Name = %q", srv.Name())
		}
	})
	t.Run("readable key", func(t *testing.T) {
		dir := t.TempDir()
		if err := minion.Identity(dir).Install(ca.Minion("web3")); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, minion.KeyFile), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := minion.New(minion.Config{StateDir: dir}); err == nil {
			t.Error("New accepted a 0644 key")
		}
	})
}

func TestInit(t *testing.T) {
	ca := certstest.NewCA(t)
	bundles := t.TempDir()
	web1 := certstest.WriteBundle(t, bundles, "web1.pem", ca.Minion("web1"))
	web2 := certstest.WriteBundle(t, bundles, "web2.pem", ca.Minion("web2"))
	op := certstest.WriteBundle(t, bundles, "op.pem", ca.Overlord("op"))
	garbage := filepath.Join(bundles, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), "minion")
	for _, tt := range []struct {
		name, bundle, msg string
	}{
		{"overlord bundle", op, `role "overlord", not a minion's`},
		{"garbage", garbage, "not a bundle"},
		{"missing", filepath.Join(bundles, "missing.pem"), "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := minion.Init(dir, tt.bundle)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Init = %v, want an error saying %q", err, tt.msg)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Error("a refused Init created the state directory")
			}
		})
	}

	b, err := minion.Init(dir, web1)
	if err != nil {
		t.Fatal(err)
	}
	if b.Cert.Subject.CommonName != "web1" {
		t.Errorf("installed %q", b.Cert.Subject.CommonName)
	}
	for name, want := range map[string]os.FileMode{".": 0o700, minion.KeyFile: 0o600, minion.CertFile: 0o644, certs.CAFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	_, err = minion.Init(dir, web2)
	if err == nil || !strings.Contains(err.Error(), "already holds a minion identity") {
		t.Errorf("second Init = %v, want a refusal", err)
	}
	got, err := minion.Identity(dir).Load()
	if err != nil || got.Cert.Subject.CommonName != "web1" {
		t.Errorf("identity after refused Init: %v, %v", got, err)
	}
}

// A minion re-enrolled under a new CA whose state directory still holds
// the old ca.crt: Init must fail cleanly, leaving no half identity that
// serve would load.
func TestInitOverStaleCA(t *testing.T) {
	oldCA, newCA := certstest.NewCA(t), certstest.NewCA(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, certs.CAFile), certs.EncodeCert(oldCA.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	bundle := certstest.WriteBundle(t, t.TempDir(), "web1.pem", newCA.Minion("web1"))
	if _, err := minion.Init(dir, bundle); err == nil {
		t.Fatal("Init over another CA's ca.crt succeeded")
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 1 || ents[0].Name() != certs.CAFile {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("state directory after a failed Init holds %v (%v); want only the %s that was there", names, err, certs.CAFile)
	}
	if _, err := minion.New(minion.Config{StateDir: dir}); err == nil {
		t.Error("minion.Init failed on a stale ca.crt but left an identity behind that minion.New loads " +
			"(serve would start with the old CA and every overlord call fail with tls)")
	}
}

// rawCall posts a JSON-RPC request body to the minion's handler, without
// TLS, and returns the decoded response.
func rawCall(t *testing.T, h http.Handler, body string) (code int, resp map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, rpc.Path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	if rr.Code == http.StatusOK {
		if err := json.Unmarshal(rr.Body.Bytes(), &resp); err != nil {
			t.Fatalf("response %q: %v", rr.Body.String(), err)
		}
	}
	return rr.Code, resp
}

func handler(t *testing.T) http.Handler {
	t.Helper()
	srv := miniontest.Serve(t, minion.Config{Bundle: certstest.NewCA(t).Minion("web1")})
	h, err := srv.HandlerForTest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func errorKind(resp map[string]any) string {
	e, _ := resp["error"].(map[string]any)
	data, _ := e["data"].(map[string]any)
	kind, _ := data["kind"].(string)
	return kind
}

func TestHandlerHTTP(t *testing.T) {
	h := handler(t)
	tests := []struct {
		name, method, path, ctype string
		want                      int
	}{
		{"GET", http.MethodGet, rpc.Path, "application/json", http.StatusMethodNotAllowed},
		{"other path", http.MethodPost, "/", "application/json", http.StatusNotFound},
		{"text body", http.MethodPost, rpc.Path, "text/plain", http.StatusUnsupportedMediaType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(`{}`))
			req.Header.Set("Content-Type", tt.ctype)
			rr := httptest.NewRecorder()
			h.ServeHTTP(rr, req)
			if rr.Code != tt.want {
				t.Errorf("HTTP %d, want %d", rr.Code, tt.want)
			}
		})
	}
}

func TestHandlerRequestTooLarge(t *testing.T) {
	h := handler(t)
	body := `{"jsonrpc":"2.0","method":"Minion.Call","id":1,"params":{"module":"test","method":"echo","args":{"message":"` +
		strings.Repeat("a", rpc.MaxRequestBytes) + `"}}}`
	code, resp := rawCall(t, h, body)
	if code == http.StatusOK && resp["error"] == nil {
		t.Fatal("a request over MaxRequestBytes was served")
	}
}

// Every JSON-RPC error a minion sends carries error.data.kind, so that
// clients can branch on it (rpc.NewServer promises this for failures
// gorilla reports itself, such as unreadable params).
func TestHandlerMalformedRequests(t *testing.T) {
	h := handler(t)
	tests := []struct {
		name, body string
	}{
		{"not JSON", `not json`},
		{"params a list", `{"jsonrpc":"2.0","method":"Minion.Call","params":[1,2],"id":1}`},
		{"module a number", `{"jsonrpc":"2.0","method":"Minion.Call","params":{"module":5,"method":"ping"},"id":1}`},
		{"too large", `{"jsonrpc":"2.0","method":"Minion.Call","id":1,"params":{"module":"test","method":"echo","args":{"message":"` +
			strings.Repeat("a", rpc.MaxRequestBytes) + `"}}}`},
	}
	var missing []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, resp := rawCall(t, h, tt.body)
			if resp["error"] == nil {
				t.Fatalf("no JSON-RPC error: %v", resp)
			}
			if errorKind(resp) == "" {
				e := resp["error"].(map[string]any)
				msg, _ := e["message"].(string)
				if len(msg) > 60 {
					msg = msg[:60] + "..."
				}
				missing = append(missing, tt.name+" (code "+jsonString(e["code"])+", "+msg+")")
			}
		})
	}
	if len(missing) > 0 {
		t.Errorf("JSON-RPC errors without error.data.kind (the client reads them as internal): %s", strings.Join(missing, "; "))
	}
}

func jsonString(v any) string { b, _ := json.Marshal(v); return string(b) }

// ARCHITECTURE section 6: "Every input is bounded and validated: ...
// unknown fields." A misspelt field must not be dropped silently: here the
// caller meant a 100ms limit and would get the 60s default.
func TestHandlerUnknownFields(t *testing.T) {
	h := handler(t)
	_, resp := rawCall(t, h, `{"jsonrpc":"2.0","method":"Minion.Call","id":1,
		"params":{"module":"test","method":"ping","timeout":"100ms"}}`)
	if resp["error"] == nil {
		t.Fatalf(`Minion.Call params {"module":"test","method":"ping","timeout":"100ms"} succeed (%v): `+
			`the unknown field "timeout" (meant: timeout_ms) is silently ignored`, resp["result"])
	}
	if k := errorKind(resp); k != string(status.KindBadArgs) {
		t.Errorf("kind %q, want bad_args", k)
	}
}

// minion serve refuses a state directory, or a file in it that says whom
// the minion trusts, that group or others can write, naming the file and
// the mode it needs.
func TestNewRefusesWritableTrustFiles(t *testing.T) {
	ca := certstest.NewCA(t)
	for _, tt := range []struct {
		name string // "" for the state directory
		dir  bool
		mode os.FileMode
		want string
	}{
		{"", true, 0o777, "0755 (chmod 755"},
		{"", true, 0o770, "0750 (chmod 750"},
		{"ca.crt", false, 0o666, "0644 (chmod 644"},
		{minion.ACLFile, false, 0o620, "0600 (chmod 600"},
		{minion.CRLFile, false, 0o602, "0600 (chmod 600"},
		{minion.PluginDir, true, 0o777, "0755 (chmod 755"},
	} {
		t.Run(fmt.Sprintf("%s %#o", tt.name, tt.mode), func(t *testing.T) {
			dir := t.TempDir()
			if err := minion.Identity(dir).Install(ca.Minion("web1")); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, tt.name)
			if tt.dir && tt.name != "" {
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
			} else if !tt.dir && tt.name != "ca.crt" {
				if err := os.WriteFile(path, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			_, err := minion.New(minion.Config{StateDir: dir})
			if err == nil || !strings.Contains(err.Error(), path+" has mode") || !strings.Contains(err.Error(), tt.want+" "+path+")") {
				t.Errorf("New = %v, want a refusal naming %s and %s", err, path, tt.want)
			}
		})
	}
}
