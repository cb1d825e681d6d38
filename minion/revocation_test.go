package minion_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/certs/certstest"
	"github.com/overlordhq/overlord/minion"
	"github.com/overlordhq/overlord/minion/miniontest"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// serveDir starts a minion from the identity installed in dir, as
// `minion serve` would, on loopback; it returns the server.
func serveDir(t *testing.T, dir string) *minion.Server {
	t.Helper()
	return miniontest.Serve(t, minion.Config{StateDir: dir})
}

// headerClient is an rpc client that remembers the last CRL number a
// minion told.
type headerClient struct {
	*rpc.Client
	mu  sync.Mutex
	crl string
}

func (h *headerClient) last() string { h.mu.Lock(); defer h.mu.Unlock(); return h.crl }

func newHeaderClient(t *testing.T, id *certs.Bundle, addr string) *headerClient {
	t.Helper()
	hc := &headerClient{}
	hc.Client = rpc.NewClient(rpc.ClientConfig{
		TLS:     certstest.ClientTLS(t, id),
		Resolve: func(string) (string, bool) { return addr, true },
		AfterCall: func(_ context.Context, _ *rpc.Client, _, _ string, h http.Header) {
			hc.mu.Lock()
			hc.crl = h.Get(rpc.CRLHeader)
			hc.mu.Unlock()
		},
	})
	t.Cleanup(hc.Close)
	return hc
}

func updateCRL(c *rpc.Client, der []byte) (rpc.UpdateCRLReply, error) {
	var reply rpc.UpdateCRLReply
	err := c.Call(context.Background(), "web1", "Minion.UpdateCRL", rpc.UpdateCRLParams{CRL: der}, &reply)
	return reply, err
}

func ping(c *rpc.Client) error {
	_, err := call(context.Background(), c, "web1", rpc.CallParams{Module: "test", Method: "ping"})
	return err
}

func TestRevocation(t *testing.T) {
	ca := certstest.NewCA(t)
	dir := filepath.Join(t.TempDir(), "web1")
	if err := minion.Identity(dir).Install(ca.Minion("web1")); err != nil {
		t.Fatal(err)
	}
	op, bot := ca.Overlord("op"), ca.Overlord("ci-bot")
	srv := serveDir(t, dir)
	addr := srv.Addr().String()
	opc := newHeaderClient(t, op, addr)
	botc := newHeaderClient(t, bot, addr)

	if err := ping(botc.Client); err != nil {
		t.Fatal(err)
	}
	if got := botc.last(); got != "0" {
		t.Errorf("CRL number before any list: %q, want 0", got)
	}
	crl1, err := ca.NewCRL(1, []certs.Revocation{{Serial: bot.Cert.SerialNumber, At: time.Now()}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	reply, err := updateCRL(opc.Client, crl1)
	if err != nil || !reply.Updated || reply.Number != 1 || reply.Revoked != 1 {
		t.Fatalf("UpdateCRL = %+v, %v", reply, err)
	}
	if got := opc.last(); got != "1" {
		t.Errorf("CRL number after the update: %q, want 1", got)
	}
	if _, err := os.Stat(filepath.Join(dir, minion.CRLFile)); err != nil {
		t.Errorf("the list was not saved: %v", err)
	}

	// ci-bot's keep-alive connection from before is refused per request;
	// a new connection in the handshake.
	err = ping(botc.Client)
	if status.KindOf(err) != status.KindDenied || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("ci-bot on its old connection: %v, want denied", err)
	}
	botc.Close()
	if err := ping(botc.Client); status.KindOf(err) != status.KindTLS {
		t.Errorf("ci-bot on a new connection: %v, want tls", err)
	}
	if err := ping(opc.Client); err != nil {
		t.Errorf("op: %v", err)
	}

	// An equal or older list changes nothing; lists not of the CA are
	// bad arguments.
	if reply, err := updateCRL(opc.Client, crl1); err != nil || reply.Updated || reply.Number != 1 {
		t.Errorf("the same list again: %+v, %v", reply, err)
	}
	other := certstest.NewCA(t)
	foreign, err := other.NewCRL(9, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, der := range map[string][]byte{"another CA's": foreign, "garbage": []byte("garbage"), "empty": nil} {
		if _, err := updateCRL(opc.Client, der); status.KindOf(err) != status.KindBadArgs {
			t.Errorf("%s list: %v, want bad_args", name, err)
		}
	}
	crl0, err := ca.NewCRL(2, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if reply, err := updateCRL(opc.Client, crl0); err != nil || !reply.Updated || reply.Revoked != 0 {
		t.Errorf("a newer list revoking nothing: %+v, %v", reply, err)
	}
	crl3, err := ca.NewCRL(3, []certs.Revocation{{Serial: bot.Cert.SerialNumber, At: time.Now()}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := updateCRL(opc.Client, crl3); err != nil {
		t.Fatal(err)
	}

	// A restarted minion keeps the list.
	if err := srv.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr2 := serveDir(t, dir).Addr().String()
	if err := ping(newHeaderClient(t, bot, addr2).Client); status.KindOf(err) != status.KindTLS {
		t.Errorf("ci-bot after a restart: %v, want tls", err)
	}
	opc2 := newHeaderClient(t, op, addr2)
	if err := ping(opc2.Client); err != nil || opc2.last() != "3" {
		t.Errorf("op after a restart: %v, CRL %q; want ok and 3", err, opc2.last())
	}

	// A list that does not verify stops the minion from starting.
	if err := os.WriteFile(filepath.Join(dir, minion.CRLFile), certs.EncodeCRL(foreign), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := minion.New(minion.Config{StateDir: dir}); err == nil || !strings.Contains(err.Error(), minion.CRLFile) {
		t.Errorf("New with another CA's list: %v, want an error naming %s", err, minion.CRLFile)
	}
}

// TestRevocationKeepsResumption: TLS sessions still resume for identities
// that are not revoked; a revoked identity's ticket is not resumed, so it
// is refused in a full handshake.
func TestRevocationKeepsResumption(t *testing.T) {
	ca := certstest.NewCA(t)
	dir := filepath.Join(t.TempDir(), "web1")
	if err := minion.Identity(dir).Install(ca.Minion("web1")); err != nil {
		t.Fatal(err)
	}
	op, bot := ca.Overlord("op"), ca.Overlord("ci-bot")
	addr := serveDir(t, dir).Addr().String()
	transport := func(id *certs.Bundle) *http.Transport {
		cfg := certstest.ClientTLS(t, id) // with a session cache
		cfg.ServerName = "web1"
		tr := &http.Transport{TLSClientConfig: cfg}
		t.Cleanup(tr.CloseIdleConnections)
		return tr
	}
	post := func(tr *http.Transport) (*http.Response, error) {
		tr.CloseIdleConnections() // a new connection each time
		body := strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"Minion.Describe","params":{}}`)
		req, _ := http.NewRequest(http.MethodPost, "https://"+addr+rpc.Path, body)
		req.Header.Set("Content-Type", "application/json")
		resp, err := tr.RoundTrip(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	opTr, botTr := transport(op), transport(bot)
	for _, tr := range []*http.Transport{opTr, botTr} {
		if _, err := post(tr); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := post(opTr)
	if err != nil || !resp.TLS.DidResume {
		t.Fatalf("op's second connection: %v, resumed %v; want a resumed session", err, err == nil && resp.TLS.DidResume)
	}
	crl, err := ca.NewCRL(1, []certs.Revocation{{Serial: bot.Cert.SerialNumber, At: time.Now()}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := updateCRL(newHeaderClient(t, op, addr).Client, crl); err != nil {
		t.Fatal(err)
	}
	for i := range 20 { // the refusal must be a TLS alert every time, not a broken connection
		if _, err := post(botTr); err == nil || !strings.Contains(err.Error(), "bad certificate") {
			t.Fatalf("ci-bot, try %d: %v, want the bad certificate alert", i, err)
		}
	}
	if resp, err := post(opTr); err != nil || !resp.TLS.DidResume {
		t.Errorf("op after the revocation: %v; want a resumed session", err)
	}
}
