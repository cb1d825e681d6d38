package minion_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/certs/certstest"
	"github.com/overlordhq/overlord/minion"
	"github.com/overlordhq/overlord/minion/miniontest"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// gatewayEnv is minion web1 with an access list, and the identities of
// its CA that call it directly or through gateways.
type gatewayEnv struct {
	ca         *certstest.CA
	dir        string // web1's state directory
	addr       string
	runs       *atomic.Int32 // counter.hit's runs
	op, bot    *certs.Bundle // overlord identities: op may call counter.* and command.*, ci-bot test.* only
	gwA, gwB   *certs.Bundle // gateways
	opc        *rpc.Client   // op, directly
	gwAc, gwBc *rpc.Client
}

func newGatewayEnv(t *testing.T, cfg minion.Config) *gatewayEnv {
	t.Helper()
	e := &gatewayEnv{ca: certstest.NewCA(t), dir: t.TempDir(), runs: new(atomic.Int32)}
	if err := os.WriteFile(filepath.Join(e.dir, minion.ACLFile), []byte("op: test.* counter.* command.*\nci-bot: test.*\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.StateDir, cfg.Bundle = e.dir, e.ca.Minion("web1")
	if cfg.Registry == nil {
		cfg.Registry = registry(t, e.runs)
	}
	e.addr = miniontest.Serve(t, cfg).Addr().String()
	e.op, e.bot = e.ca.Overlord("op"), e.ca.Overlord("ci-bot")
	e.gwA, e.gwB = e.ca.Gateway("gw-a"), e.ca.Gateway("gw-b")
	addrs := map[string]string{"web1": e.addr}
	e.opc = dial(t, certstest.ClientTLS(t, e.op), addrs)
	e.gwAc = dial(t, certstest.ClientTLS(t, e.gwA), addrs)
	e.gwBc = dial(t, certstest.ClientTLS(t, e.gwB), addrs)
	return e
}

// audit returns web1's audit entries.
func (e *gatewayEnv) audit(t *testing.T) []minion.AuditEntry {
	t.Helper()
	es, err := minion.ReadAudit(e.dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// find returns the last audit entry matching want's RPC, Call, Identity
// and Via, or nil.
func find(es []minion.AuditEntry, want minion.AuditEntry) *minion.AuditEntry {
	for i := len(es) - 1; i >= 0; i-- {
		e := es[i]
		if e.RPC == want.RPC && e.Call == want.Call && e.Identity == want.Identity && e.Via == want.Via {
			return &e
		}
	}
	return nil
}

// A gateway calls for an overlord identity: the identity's access list
// applies, and the audit log records both.
func TestGatewayCallsAsIdentity(t *testing.T) {
	e := newGatewayEnv(t, minion.Config{})
	hit := rpc.CallParams{Module: "counter", Method: "hit"}
	asOp := rpc.WithOnBehalfOf(context.Background(), e.op.Cert)
	asBot := rpc.WithOnBehalfOf(context.Background(), e.bot.Cert)

	if _, err := call(asOp, e.gwAc, "web1", hit); err != nil {
		t.Fatalf("gw-a for op calling counter.hit: %v", err)
	}
	if e.runs.Load() != 1 {
		t.Fatalf("counter.hit ran %d times, want 1", e.runs.Load())
	}
	_, err := call(asBot, e.gwAc, "web1", hit)
	if status.KindOf(err) != status.KindDenied || !strings.Contains(err.Error(), "ci-bot may not call counter.hit") {
		t.Errorf("gw-a for ci-bot calling counter.hit: %v, want denied by ci-bot's access list", err)
	}
	if _, err := call(asBot, e.gwBc, "web1", rpc.CallParams{Module: "test", Method: "ping"}); err != nil {
		t.Errorf("gw-b for ci-bot calling test.ping: %v", err)
	}
	if e.runs.Load() != 1 {
		t.Errorf("counter.hit ran %d times, want 1", e.runs.Load())
	}
	// Again, on the kept connection and with the certificate known.
	if _, err := call(asOp, e.gwAc, "web1", hit); err != nil || e.runs.Load() != 2 {
		t.Errorf("gw-a for op again: %v, %d runs; want ok, 2", err, e.runs.Load())
	}

	// Forward (the service's way to pass a call on) names the identity
	// too.
	resp, err := e.gwBc.Forward(asOp, "web1", []byte(`{"jsonrpc":"2.0","id":1,"method":"Minion.Call","params":{"module":"counter","method":"hit"}}`))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || e.runs.Load() != 3 {
		t.Errorf("gw-b forwarding for op: HTTP %d, %d runs; want 200, 3", resp.StatusCode, e.runs.Load())
	}

	es := e.audit(t)
	for _, want := range []minion.AuditEntry{
		{RPC: "Minion.Call", Call: "counter.hit", Identity: "op", Via: "gw-b", Outcome: "ok"},
		{RPC: "Minion.Call", Call: "counter.hit", Identity: "op", Via: "gw-a", Outcome: "ok"},
		{RPC: "Minion.Call", Call: "counter.hit", Identity: "ci-bot", Via: "gw-a", Outcome: "denied"},
		{RPC: "Minion.Call", Call: "test.ping", Identity: "ci-bot", Via: "gw-b", Outcome: "ok"},
	} {
		got := find(es, want)
		if got == nil || got.Outcome != want.Outcome {
			t.Errorf("no audit entry %+v in %+v", want, es)
		}
	}

	// Directly, op is op, with no gateway.
	if _, err := call(context.Background(), e.opc, "web1", hit); err != nil {
		t.Fatal(err)
	}
	if got := find(e.audit(t), minion.AuditEntry{RPC: "Minion.Call", Call: "counter.hit", Identity: "op"}); got == nil {
		t.Error("op's direct call is not in the audit log without a gateway")
	}
}

// gatewayPost sends Minion.Call counter.hit to web1 over TLS with
// identity id, with the given values of rpc.OnBehalfOfHeader, and
// returns the HTTP status and the error's kind and message.
func gatewayPost(t *testing.T, id *certs.Bundle, addr string, onBehalf []string) (code int, kind, msg string) {
	t.Helper()
	cfg := certstest.ClientTLS(t, id)
	cfg.ServerName = "web1"
	tr := &http.Transport{TLSClientConfig: cfg}
	defer tr.CloseIdleConnections()
	body := `{"jsonrpc":"2.0","id":1,"method":"Minion.Call","params":{"module":"counter","method":"hit"}}`
	req, err := http.NewRequest(http.MethodPost, "https://"+addr+rpc.Path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, v := range onBehalf {
		req.Header.Add(rpc.OnBehalfOfHeader, v)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var answer struct {
		Error *struct {
			Message string `json:"message"`
			Data    struct {
				Kind string `json:"kind"`
			} `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &answer); err != nil {
		t.Fatalf("answer %q: %v", data, err)
	}
	if resp.Header.Get(rpc.CRLHeader) == "" {
		t.Errorf("the answer has no %s", rpc.CRLHeader)
	}
	if answer.Error == nil {
		return resp.StatusCode, "", ""
	}
	return resp.StatusCode, answer.Error.Data.Kind, answer.Error.Message
}

// Every way a gateway may not call, and an overlord identity that names
// another: refused, kind denied, saying why, and nothing runs.
func TestGatewayRefusals(t *testing.T) {
	e := newGatewayEnv(t, minion.Config{})
	other := certstest.NewCA(t)
	b64 := func(c *x509.Certificate) string { return base64.StdEncoding.EncodeToString(c.Raw) }
	gone := e.ca.Overlord("gone")
	crl, err := e.ca.NewCRL(1, []certs.Revocation{{Serial: gone.Cert.SerialNumber, At: time.Now()}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var reply rpc.UpdateCRLReply
	if err := e.opc.Call(context.Background(), "web1", "Minion.UpdateCRL", rpc.UpdateCRLParams{CRL: crl}, &reply); err != nil {
		t.Fatal(err)
	}
	overlordWith := func(name string, usage x509.ExtKeyUsage, from, to time.Time) *x509.Certificate {
		return e.ca.Sign(&x509.Certificate{Subject: certstest.Subject(name, certs.RoleOverlord),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, NotBefore: from, NotAfter: to}).Cert
	}
	now := time.Now()
	tests := []struct {
		name     string
		id       *certs.Bundle
		onBehalf []string
		msg      string
	}{
		{"gateway without the header", e.gwA, nil, "a gateway must name the identity it calls for"},
		{"gateway with an empty header", e.gwA, []string{""}, "a gateway must name the identity it calls for"},
		{"gateway naming two identities", e.gwA, []string{b64(e.op.Cert), b64(e.bot.Cert)}, "named 2 identities"},
		{"a minion's certificate", e.gwA, []string{b64(e.ca.Minion("web9").Cert)}, "role minion, not overlord"},
		{"another gateway's certificate", e.gwA, []string{b64(e.gwB.Cert)}, "role gateway, not overlord"},
		{"its own certificate", e.gwA, []string{b64(e.gwA.Cert)}, "role gateway, not overlord"},
		{"the CA's certificate", e.gwA, []string{b64(e.ca.Cert)}, "role ca, not overlord"},
		{"a revoked identity", e.gwA, []string{b64(gone.Cert)}, "revoked"},
		{"an identity of another CA", e.gwA, []string{b64(other.Overlord("op").Cert)}, "unknown authority"},
		{"an expired identity", e.gwA, []string{b64(overlordWith("old", x509.ExtKeyUsageClientAuth, now.Add(-48*time.Hour), now.Add(-24*time.Hour)))}, "expired"},
		{"an identity not yet valid", e.gwA, []string{b64(overlordWith("soon", x509.ExtKeyUsageClientAuth, now.Add(24*time.Hour), now.Add(48*time.Hour)))}, "not yet valid"},
		{"an identity without client auth", e.gwA, []string{b64(overlordWith("srv", x509.ExtKeyUsageServerAuth, time.Time{}, time.Time{}))}, "client authentication"},
		{"garbage base64", e.gwA, []string{"!!! not base64 ***"}, "base64"},
		{"base64 of garbage", e.gwA, []string{base64.StdEncoding.EncodeToString([]byte("garbage"))}, "not a certificate"},
		{"URL-safe base64", e.gwA, []string{base64.URLEncoding.EncodeToString(e.op.Cert.Raw) + "-_"}, "base64"},
		{"a huge header", e.gwA, []string{strings.Repeat("A", 32<<10)}, "bytes, more than"},
		{"an overlord identity naming another", e.op, []string{b64(e.bot.Cert)}, "only gateways may call on behalf of another identity"},
		{"an overlord identity naming itself", e.op, []string{b64(e.op.Cert)}, "only gateways may call on behalf of another identity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, kind, msg := gatewayPost(t, tt.id, e.addr, tt.onBehalf)
			t.Logf("refused: %s", msg)
			if code != http.StatusForbidden || kind != string(status.KindDenied) || !strings.Contains(msg, tt.msg) {
				t.Errorf("HTTP %d, kind %q, %q; want 403, denied, saying %q", code, kind, msg, tt.msg)
			}
			if e.runs.Load() != 0 {
				t.Fatalf("counter.hit ran")
			}
		})
	}
	// The refusals are in the audit log, with the gateway.
	if got := find(e.audit(t), minion.AuditEntry{RPC: minion.AuditRefused, Identity: "gone", Via: "gw-a"}); got == nil ||
		got.Outcome != "denied" || !strings.Contains(got.Message, "revoked") {
		t.Errorf("the revoked identity's refusal in the audit log: %+v", got)
	}
	named := false
	for _, a := range e.audit(t) {
		named = named || a.RPC == minion.AuditRefused && a.Via == "gw-a" && a.Identity == "" && strings.Contains(a.Message, "must name")
	}
	if !named {
		t.Error("the refusal of a gateway naming no identity is not in the audit log")
	}
	// The header done right is served.
	if code, kind, msg := gatewayPost(t, e.gwA, e.addr, []string{b64(e.op.Cert)}); code != http.StatusOK || kind != "" {
		t.Errorf("gw-a for op: HTTP %d, %s %s", code, kind, msg)
	}
}

// A revoked gateway is refused like a revoked identity: in the handshake
// of a new connection, per request on a connection kept from before.
func TestGatewayRevoked(t *testing.T) {
	e := newGatewayEnv(t, minion.Config{})
	asOp := rpc.WithOnBehalfOf(context.Background(), e.op.Cert)
	ping := rpc.CallParams{Module: "test", Method: "ping"}
	if _, err := call(asOp, e.gwAc, "web1", ping); err != nil {
		t.Fatal(err)
	}
	crl, err := e.ca.NewCRL(1, []certs.Revocation{{Serial: e.gwA.Cert.SerialNumber, At: time.Now()}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var reply rpc.UpdateCRLReply
	if err := e.opc.Call(context.Background(), "web1", "Minion.UpdateCRL", rpc.UpdateCRLParams{CRL: crl}, &reply); err != nil {
		t.Fatal(err)
	}
	_, err = call(asOp, e.gwAc, "web1", ping)
	if status.KindOf(err) != status.KindDenied || !strings.Contains(err.Error(), "gateway certificate \"gw-a\"") {
		t.Errorf("revoked gw-a on its kept connection: %v, want denied naming it", err)
	}
	e.gwAc.Close()
	if _, err := call(asOp, e.gwAc, "web1", ping); status.KindOf(err) != status.KindTLS {
		t.Errorf("revoked gw-a on a new connection: %v, want tls", err)
	}
	if _, err := call(asOp, e.gwBc, "web1", ping); err != nil {
		t.Errorf("gw-b for op: %v", err)
	}
}

// An async job submitted through one gateway is found through another:
// the same identity and origin give the same job, whose status, listing
// and cancel belong to the identity, not to a gateway.
func TestGatewayAsyncJobFollowsTheIdentity(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e := newGatewayEnv(t, minion.Config{RunnerCommand: []string{exe, "-test.run=^$"}})
	asOp := rpc.WithOnBehalfOf(context.Background(), e.op.Cert)
	asBot := rpc.WithOnBehalfOf(context.Background(), e.bot.Cert)
	submit := func(ctx context.Context, c *rpc.Client, origin string) (rpc.SubmitReply, error) {
		var r rpc.SubmitReply
		err := c.Call(ctx, "web1", "Minion.Submit", rpc.SubmitParams{OriginJobID: origin, Module: "test", Method: "ping"}, &r)
		return r, err
	}
	first, err := submit(asOp, e.gwAc, "job-1")
	if err != nil || !first.Created {
		t.Fatalf("submit through gw-a: %+v, %v", first, err)
	}
	again, err := submit(asOp, e.gwBc, "job-1")
	if err != nil || again.Created || again.JobID != first.JobID {
		t.Fatalf("the same submit through gw-b: %+v, %v; want job %s, not created", again, err, first.JobID)
	}
	direct, err := submit(context.Background(), e.opc, "job-1")
	if err != nil || direct.Created || direct.JobID != first.JobID {
		t.Errorf("the same submit by op directly: %+v, %v; want job %s", direct, err, first.JobID)
	}
	// Another identity through the same gateway has a job of its own.
	theirs, err := submit(asBot, e.gwAc, "job-1")
	if err != nil || !theirs.Created || theirs.JobID == first.JobID {
		t.Errorf("ci-bot's submit through gw-a: %+v, %v; want a new job", theirs, err)
	}

	statusOf := func(ctx context.Context, c *rpc.Client) (rpc.JobStatus, error) {
		var r rpc.StatusReply
		if err := c.Call(ctx, "web1", "Minion.Status", rpc.StatusParams{JobIDs: []string{first.JobID}}, &r); err != nil {
			return rpc.JobStatus{}, err
		}
		return r.Jobs[0], nil
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := statusOf(asOp, e.gwBc)
		if err != nil {
			t.Fatalf("status through gw-b: %v", err)
		}
		if st.State == status.Finished {
			if st.Error != nil || string(st.Result) != "true" {
				t.Errorf("job %s finished with %s, %v; want true", first.JobID, st.Result, st.Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s did not finish: %+v", first.JobID, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st, err := statusOf(asBot, e.gwBc); err == nil && st.Error == nil {
		t.Errorf("ci-bot through gw-b sees op's job: %+v", st)
	}
	var cancel rpc.CancelReply
	if err := e.gwAc.Call(asBot, "web1", "Minion.Cancel", rpc.CancelParams{JobID: first.JobID}, &cancel); status.KindOf(err) != status.KindLost {
		t.Errorf("ci-bot cancelling op's job through gw-a: %v, want lost", err)
	}
	if err := e.gwAc.Call(asOp, "web1", "Minion.Cancel", rpc.CancelParams{JobID: first.JobID}, &cancel); err != nil {
		t.Errorf("op cancelling its finished job through gw-a: %v", err)
	}
	var list rpc.ListReply
	if err := e.gwBc.Call(asOp, "web1", "Minion.List", rpc.ListParams{}, &list); err != nil || len(list.Jobs) != 1 || list.Jobs[0].JobID != first.JobID {
		t.Errorf("op's jobs through gw-b: %+v, %v; want job %s only", list.Jobs, err, first.JobID)
	}
	if got := find(e.audit(t), minion.AuditEntry{RPC: "Minion.Submit", Call: "test.ping", Identity: "op", Via: "gw-a"}); got == nil || got.JobID != first.JobID {
		t.Errorf("op's submit through gw-a in the audit log: %+v", got)
	}
	// ci-bot's job ends before the test does: its runner writes in the
	// spool, which the test's directory must not hold when it is removed.
	if theirs.JobID != "" {
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			var r rpc.StatusReply
			err := e.gwBc.Call(asBot, "web1", "Minion.Status", rpc.StatusParams{JobIDs: []string{theirs.JobID}}, &r)
			if err == nil && len(r.Jobs) == 1 && r.Jobs[0].State == status.Finished {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("ci-bot's job %s did not finish: %+v, %v", theirs.JobID, r, err)
			}
		}
	}
}

// A call that outlives its wait, made through one gateway, is the
// identity's: adopted through another, and by no other identity.
func TestGatewayHeldCallAdoptedThroughAnother(t *testing.T) {
	e := newGatewayEnv(t, minion.Config{})
	asOp := rpc.WithOnBehalfOf(context.Background(), e.op.Cert)
	asBot := rpc.WithOnBehalfOf(context.Background(), e.bot.Cert)
	gate := filepath.Join(t.TempDir(), "gate")
	held, err := call(asOp, e.gwAc, "web1", rpc.CallParams{Module: "command", Method: "run", OriginJobID: "held-1",
		Args:      map[string]any{"cmd": "while [ ! -e " + gate + " ]; do sleep 0.02; done; echo done"},
		TimeoutMS: 100, JobTimeoutMS: 60_000})
	if err != nil || !held.Detached || held.JobID == "" {
		t.Fatalf("held call through gw-a: %+v, %v; want detached", held, err)
	}
	adopt := func(ctx context.Context, c *rpc.Client) (rpc.SubmitReply, error) {
		var r rpc.SubmitReply
		err := c.Call(ctx, "web1", "Minion.Adopt", rpc.AdoptParams{OriginJobID: "held-1"}, &r)
		return r, err
	}
	if got, err := adopt(asBot, e.gwBc); err == nil {
		t.Errorf("ci-bot adopted op's call through gw-b: %+v", got)
	}
	got, err := adopt(asOp, e.gwBc)
	if err != nil || got.JobID != held.JobID {
		t.Fatalf("op adopting through gw-b: %+v, %v; want job %s", got, err, held.JobID)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var r rpc.StatusReply
		if err := e.gwBc.Call(asOp, "web1", "Minion.Status", rpc.StatusParams{JobIDs: []string{held.JobID}}, &r); err != nil {
			t.Fatal(err)
		}
		if st := r.Jobs[0]; st.State == status.Finished {
			if !st.OK || !strings.Contains(string(st.Result), "done") {
				t.Errorf("held job finished with %s, %v", st.Result, st.Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("held job %s did not finish", held.JobID)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := find(e.audit(t), minion.AuditEntry{RPC: "Minion.Call", Call: "command.run", Identity: "op", Via: "gw-a"}); got == nil || got.JobID != held.JobID {
		t.Errorf("the held call in the audit log: %+v", got)
	}
}
