package minion_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs/certstest"
	"github.com/overlordhq/overlord/minion"
	"github.com/overlordhq/overlord/rpc"
)

// A client that does not read its answer loses its connection once the
// write timeout passes, instead of holding the request (its slot and
// the handler) for ever: the server then has nothing left to drain.
func TestWriteTimeout(t *testing.T) {
	ca := certstest.NewCA(t)
	srv, err := minion.New(minion.Config{StateDir: t.TempDir(), Bundle: ca.Minion("web1"), Listen: "127.0.0.1:0", WriteTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	file := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(file, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}

	conn, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A receive buffer far smaller than the answer (over 5.5 MB: 4 MiB
	// in base64), so that the minion's writes block while nothing reads.
	if err := conn.(*net.TCPConn).SetReadBuffer(4 << 10); err != nil {
		t.Fatal(err)
	}
	cfg := certstest.ClientTLS(t, ca.Overlord("op"))
	cfg.ServerName = "web1"
	tc := tls.Client(conn, cfg)
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"Minion.ReadChunk","params":{"path":%q,"offset":0,"length":%d}}`, file, 4<<20)
	if _, err := fmt.Fprintf(tc, "POST /rpc HTTP/1.1\r\nHost: web1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
		t.Fatal(err)
	}
	// Wait until the minion has dealt with the request: the answer's first
	// bytes arrive (the rest, far more than the buffers hold, is not
	// read), or the minion closes the connection (its write timeout
	// passed before anything reached us). A busy machine may take long to
	// build a 5.5 MB answer: the deadline only bounds a broken test.
	tc.SetReadDeadline(time.Now().Add(2 * time.Minute))
	if _, err := tc.Read(make([]byte, 16)); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("no answer, and the connection still open, after 2 minutes: %v", err)
	}

	// Shutdown waits for requests in flight: the one whose answer nobody
	// reads must end by its write timeout, well before this deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		t.Errorf("Close: %v; the answer nobody reads still holds its request", err)
	}
}

// The write timeout counts from the answer's start: a call that runs
// longer than it still gets its answer.
func TestWriteTimeoutLongCall(t *testing.T) {
	ca := certstest.NewCA(t)
	srv, err := minion.New(minion.Config{StateDir: t.TempDir(), Bundle: ca.Minion("web1"), Listen: "127.0.0.1:0", WriteTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	c := dial(t, certstest.ClientTLS(t, ca.Overlord("op")), map[string]string{"web1": srv.Addr().String()})
	for range 2 { // the second on the same connection, after the first's deadline
		if _, err := call(context.Background(), c, "web1", rpc.CallParams{Module: "test", Method: "sleep", Positional: []any{0.5}}); err != nil {
			t.Fatalf("a call longer than the write timeout: %v", err)
		}
	}
}

// Connections that have not finished a TLS handshake do not count
// against MaxConns: two idle TCP connections (no certificate needed)
// cannot keep a call out with MaxConns 2. (They took both places before.)
func TestMaxConns(t *testing.T) {
	ca := certstest.NewCA(t)
	srv, err := minion.New(minion.Config{StateDir: t.TempDir(), Bundle: ca.Minion("web1"), Listen: "127.0.0.1:0", MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	addr := srv.Addr().String()
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	c := rpc.NewClient(rpc.ClientConfig{
		TLS:     certstest.ClientTLS(t, ca.Overlord("op")),
		Resolve: func(string) (string, bool) { return addr, true },
	})
	defer c.Close()
	for i := range 3 { // the same connection, kept alive, and a new one
		if i == 2 {
			c.Close()
		}
		if _, err := call(context.Background(), c, "web1", rpc.CallParams{Module: "test", Method: "ping"}); err != nil {
			t.Fatalf("call %d beside two idle connections without a handshake, MaxConns 2: %v", i, err)
		}
	}
}
