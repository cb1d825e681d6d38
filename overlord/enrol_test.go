package overlord_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/enrolment"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/minion"
	"github.com/overlordhq/overlord/minion/miniontest"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

// startEndpoint opens o's enrolment endpoint on loopback; it is closed
// when the test ends.
func startEndpoint(t *testing.T, o *overlord.Overlord) *overlord.Endpoint {
	t.Helper()
	return startEndpointClock(t, o, nil)
}

// startEndpointClock is startEndpoint with the endpoint's clock (nil for
// time.Now).
func startEndpointClock(t *testing.T, o *overlord.Overlord, now func() time.Time) *overlord.Endpoint {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep, err := o.NewEndpoint(overlord.EndpointConfig{Listener: ln, Now: now})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	if err := ep.Open(context.Background()); err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := ep.Close(ctx); err != nil {
			t.Errorf("close the endpoint: %v", err)
		}
	})
	return ep
}

// serveEnrolled serves the minion installed in dir on ln, as `minion
// serve` would.
func serveEnrolled(t *testing.T, dir string, ln net.Listener) {
	t.Helper()
	miniontest.Serve(t, minion.Config{StateDir: dir, Listener: ln})
}

func ping(t *testing.T, o *overlord.Overlord, target string) status.Job {
	t.Helper()
	p, err := o.Prepare(overlord.CallSpec{Target: target, Module: "test", Method: "ping", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	job, err := o.Call(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

func TestEnrolWithToken(t *testing.T) {
	o := newOverlord(t)
	// The endpoint's clock runs with the real one, plus a lead the test
	// adds to make a token expire without waiting for it.
	var lead atomic.Int64
	ep := startEndpointClock(t, o, func() time.Time { return time.Now().Add(time.Duration(lead.Load())) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() }) // after the minion serving on it closes
	tok, rec, err := o.CreateToken(time.Hour, 1, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Hash == tok.Secret || rec.Hash != tok.Hash() || rec.Uses != 1 {
		t.Fatalf("stored token %+v", rec)
	}
	dir := filepath.Join(t.TempDir(), "web4")
	ctx := context.Background()
	res, err := minion.Enrol(ctx, minion.EnrolConfig{StateDir: dir, Server: ep.Addr().String(), Name: "web4", Addr: ln.Addr().String(), Token: tok.String()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Bundle == nil || res.CAFingerprint != ep.CAFingerprint() {
		t.Fatalf("result %+v", res)
	}
	// Installed as minion init would: the key never left, 0600.
	b, err := minion.Identity(dir).Load()
	if err != nil {
		t.Fatal(err)
	}
	if certs.KeyFingerprint(b.Cert.PublicKey) != res.KeyFingerprint || certs.RoleOf(b.Cert) != certs.RoleMinion {
		t.Errorf("installed certificate: role %s", certs.RoleOf(b.Cert))
	}
	if m := mode(t, filepath.Join(dir, minion.KeyFile)); m != 0o600 {
		t.Errorf("minion.key mode %o", m)
	}
	if _, err := os.Stat(filepath.Join(dir, minion.EnrolKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("enrol.key left behind: %v", err)
	}
	ms, err := o.Store.Minions()
	if err != nil || len(ms) != 1 || ms[0].Name != "web4" || ms[0].Addr != ln.Addr().String() || ms[0].Fingerprint != certs.Fingerprint(b.Cert) {
		t.Fatalf("registry %+v, %v", ms, err)
	}
	serveEnrolled(t, dir, ln)
	if job := ping(t, o, "web4"); job.Summary.OK != 1 {
		t.Fatalf("call after enrolment: %+v", job.Minions)
	}

	// The token is used up; a wrong secret, another CA's token, an
	// expired token are refused; nothing is written for them.
	bad := tok
	bad.Secret = strings.Repeat("0", len(tok.Secret))
	foreign := tok
	foreign.CAFingerprint = strings.Repeat("ab", 32)
	expired, _, err := o.CreateToken(time.Minute, 5, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	lead.Store(int64(2 * time.Minute)) // expired by the endpoint's clock, and tok still valid
	srv := ep.Addr().String()
	for _, tt := range []struct {
		name  string
		token string
		want  error
	}{
		{"used up", tok.String(), enrolment.ErrTokenUsedUp},
		{"wrong secret", bad.String(), enrolment.ErrTokenInvalid},
		{"expired", expired.String(), enrolment.ErrTokenExpired},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := minion.Enrol(ctx, minion.EnrolConfig{StateDir: filepath.Join(t.TempDir(), "m"), Server: srv, Name: "web5", Addr: "127.0.0.1:1", Token: tt.token})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Enrol: %v, want %v", err, tt.want.(*enrolment.Error).Kind)
			}
		})
	}
	// Another CA's token: the minion refuses the endpoint itself.
	_, err = minion.Enrol(ctx, minion.EnrolConfig{StateDir: filepath.Join(t.TempDir(), "m"), Server: srv, Name: "web5", Addr: "127.0.0.1:1", Token: foreign.String()})
	if !errors.Is(err, enrolment.ErrUnverified) {
		t.Errorf("another CA's token: %v, want ErrUnverified", err)
	}
	if reqs, _ := o.Store.Requests(); len(reqs) != 1 {
		t.Errorf("%d requests recorded, want only web4's", len(reqs))
	}
	// Enrolling again into an enrolled state directory is refused.
	if _, err := minion.Enrol(ctx, minion.EnrolConfig{StateDir: dir, Server: srv, Name: "web4", Addr: "127.0.0.1:1", Token: tok.String()}); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Errorf("enrol twice: %v", err)
	}
}

func TestEnrolSignedByOperator(t *testing.T) {
	o := newOverlord(t)
	ep := startEndpoint(t, o)
	srv := ep.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := minion.EnrolConfig{StateDir: filepath.Join(t.TempDir(), "web6"), Server: srv, Name: "web6", Addr: "127.0.0.1:5006", PollInterval: 20 * time.Millisecond}

	// Without a token or a fingerprint nothing is sent; the error tells
	// the fingerprint the endpoint presents.
	_, err := minion.Enrol(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "--ca-fingerprint "+ep.CAFingerprint()) {
		t.Fatalf("Enrol without a token or fingerprint: %v", err)
	}
	if reqs, _ := o.Store.Requests(); len(reqs) != 0 {
		t.Fatal("a request was sent to an unverified endpoint")
	}
	cfg.CAFingerprint = ep.CAFingerprint()
	res, err := minion.Enrol(ctx, cfg)
	if !errors.Is(err, minion.ErrPending) || res.Bundle != nil {
		t.Fatalf("Enrol without a token: %+v, %v; want ErrPending", res, err)
	}
	entries, err := o.Certs()
	if err != nil {
		t.Fatal(err)
	}
	var pending *overlord.CertEntry
	for i, e := range entries {
		if e.Name == "web6" {
			pending = &entries[i]
		}
	}
	if pending == nil || pending.State != "pending" || pending.KeyFingerprint != res.KeyFingerprint || pending.Addr != cfg.Addr {
		t.Fatalf("certs list: %+v", entries)
	}

	// --wait: signed by an operator while it polls, with the same key.
	cfg.Wait = true
	done := make(chan error, 1)
	var got *minion.EnrolResult
	go func() {
		var err error
		got, err = minion.Enrol(ctx, cfg)
		done <- err
	}()
	r, err := o.SignRequest("web6", time.Now()) // pending already: no race with the poller
	if err != nil || r.State != jobs.StateSigned {
		t.Fatalf("SignRequest = %+v, %v", r, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Enrol --wait: %v", err)
	}
	if got.Bundle == nil || got.KeyFingerprint != res.KeyFingerprint {
		t.Errorf("signed for key %s, requested with %s", got.KeyFingerprint, res.KeyFingerprint)
	}
	if ms, _ := o.Store.Minions(); len(ms) != 1 || ms[0].Addr != "127.0.0.1:5006" {
		t.Errorf("registry %+v", ms)
	}

	// --wait: rejected.
	cfg.Name, cfg.StateDir = "web7", filepath.Join(t.TempDir(), "web7")
	go func() { _, err := minion.Enrol(ctx, cfg); done <- err }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := o.RejectRequest("web7", time.Now()); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := <-done; !errors.Is(err, enrolment.ErrRejected) {
		t.Fatalf("Enrol --wait, rejected: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, minion.CertFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("a rejected minion has a certificate")
	}
}

// TestEndpointBadRequests: whatever arrives, a clear refusal with a kind,
// and nothing recorded.
func TestEndpointBadRequests(t *testing.T) {
	o := newOverlord(t)
	ep := startEndpoint(t, o)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	url := "https://" + ep.Addr().String() + enrolment.Path
	key, _ := certs.NewKey(certs.ECDSA)
	csr, _ := certs.NewCSR(key, "web1")
	good := func(mod func(*enrolment.Request)) string {
		r := enrolment.Request{Name: "web1", Addr: "127.0.0.1:5001", CSR: string(certs.EncodeCSR(csr))}
		mod(&r)
		b, _ := json.Marshal(r)
		return string(b)
	}
	tests := []struct {
		name, ctype, body string
		code              int
		kind              string
	}{
		{"not JSON", "application/json", "{", 400, enrolment.KindBadRequest},
		{"binary", "application/json", "\x00\xff\x10garbage", 400, enrolment.KindBadRequest},
		{"two objects", "application/json", good(func(*enrolment.Request) {}) + "{}", 400, enrolment.KindBadRequest},
		{"unknown field", "application/json", `{"name":"web1","role":"overlord"}`, 400, enrolment.KindBadRequest},
		{"too big", "application/json", `{"name":"` + strings.Repeat("a", enrolment.MaxRequestBytes) + `"}`, 400, enrolment.KindBadRequest},
		{"text", "text/plain", good(func(*enrolment.Request) {}), 400, enrolment.KindBadRequest},
		{"bad name", "application/json", good(func(r *enrolment.Request) { r.Name = "../etc" }), 400, enrolment.KindBadRequest},
		{"IP name", "application/json", good(func(r *enrolment.Request) { r.Name = "10.0.0.1" }), 400, enrolment.KindBadRequest},
		{"bad address", "application/json", good(func(r *enrolment.Request) { r.Addr = "nowhere" }), 400, enrolment.KindBadRequest},
		{"CSR for another name", "application/json", good(func(r *enrolment.Request) { r.Name = "web2" }), 400, enrolment.KindBadRequest},
		{"no CSR", "application/json", good(func(r *enrolment.Request) { r.CSR = "" }), 400, enrolment.KindBadRequest},
		{"malformed token", "application/json", good(func(r *enrolment.Request) { r.Token = "letmein" }), 403, enrolment.KindTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.Post(url, tt.ctype, bytes.NewReader([]byte(tt.body)))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var er enrolment.ErrorReply
			if err := json.NewDecoder(resp.Body).Decode(&er); err != nil || er.Error == nil {
				t.Fatalf("HTTP %d, body not an error reply: %v", resp.StatusCode, err)
			}
			if resp.StatusCode != tt.code || er.Error.Kind != tt.kind {
				t.Errorf("HTTP %d kind %s (%s), want %d %s", resp.StatusCode, er.Error.Kind, er.Error.Message, tt.code, tt.kind)
			}
		})
	}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: HTTP %d", resp.StatusCode)
	}
	if reqs, _ := o.Store.Requests(); len(reqs) != 0 {
		t.Errorf("bad requests were recorded: %+v", reqs)
	}
}

func TestCreateTokenBounds(t *testing.T) {
	o := newOverlord(t)
	for _, tt := range []struct {
		ttl  time.Duration
		uses int
	}{{0, 1}, {-time.Second, 1}, {overlord.MaxTokenTTL + time.Second, 1}, {time.Hour, 0}, {time.Hour, overlord.MaxTokenUses + 1}} {
		if _, _, err := o.CreateToken(tt.ttl, tt.uses, time.Now()); err == nil {
			t.Errorf("CreateToken(%s, %d) accepted", tt.ttl, tt.uses)
		}
	}
	if ts, _ := o.Store.Tokens(); len(ts) != 0 {
		t.Errorf("tokens stored: %+v", ts)
	}
}
