package overlord_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/minion/miniontest"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/builtin"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

// gw is a gateway served in-process for a fleet's overlord.
type gw struct {
	name, addr, dir string
	srv             *overlord.GatewayServer
}

// startGW registers the gateway name with f's overlord, installs it in a
// state directory of its own and serves it on a loopback port until the
// test ends.
func startGW(t *testing.T, f *miniontest.Fleet, name string) *gw {
	t.Helper()
	ln, err := miniontest.Listen()
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), name+".pem")
	if _, err := f.Overlord.AddGateway(name, ln.Addr().String(), bundle, certs.ECDSA); err != nil {
		ln.Close()
		t.Fatal(err)
	}
	b, err := certs.ReadBundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "gw")
	g := overlord.New(dir, "", 0, slog.New(slog.DiscardHandler))
	if err := g.InitGateway(b); err != nil {
		t.Fatal(err)
	}
	srv, err := g.OpenGateway(context.Background(), overlord.GatewayConfig{Listener: ln})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("gateway %s: close: %v", name, err)
		}
	})
	return &gw{name: name, addr: ln.Addr().String(), dir: dir, srv: srv}
}

// identity issues another overlord identity of f's CA.
func identity(t *testing.T, f *miniontest.Fleet, name string) tls.Certificate {
	t.Helper()
	b, err := f.Overlord.IssueClient(name, filepath.Join(t.TempDir(), name+".pem"), certs.ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	id, err := b.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// ownClient is gwClient as the fleet's overlord's own identity.
func ownClient(t *testing.T, f *miniontest.Fleet) *http.Client {
	t.Helper()
	self, err := f.Overlord.Identity()
	if err != nil {
		t.Fatal(err)
	}
	id, err := self.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return gwClient(t, f, id)
}

// gwClient is an HTTPS client to gw1 as the identity id (what an overlord
// sends a gateway, without its pin of the gateway's certificate).
func gwClient(t *testing.T, f *miniontest.Fleet, id tls.Certificate) *http.Client {
	t.Helper()
	self, err := f.Overlord.Identity()
	if err != nil {
		t.Fatal(err)
	}
	cfg := certs.GatewayClientConfig(id, self.Pool())
	cfg.ServerName = "gw1" // the gateway of every test here
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// bundleMinion is a minion in a bundle, as the overlord sends it.
type bundleMinion struct {
	Name        string `json:"name"`
	Addr        string `json:"addr"`
	Fingerprint string `json:"fingerprint"`
}

// bundleOf is the bundle of f's minions names (by index) for job.
func bundleOf(t *testing.T, f *miniontest.Fleet, idx ...int) []bundleMinion {
	t.Helper()
	inv, err := f.Overlord.Store.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	var out []bundleMinion
	for _, i := range idx {
		for _, m := range inv.Minions {
			if m.Name == f.Names[i] {
				out = append(out, bundleMinion{m.Name, m.Addr, m.Fingerprint})
			}
		}
	}
	return out
}

// bundleLine is a line of a gateway's answer.
type bundleLine struct {
	Minion string         `json:"minion"`
	Result *status.Result `json:"result"`
	End    bool           `json:"end"`
	Unsent []string       `json:"unsent"`
}

// postBundle posts a bundle (req, marshalled as it is) to g and returns
// the answer's status and lines.
func postBundle(t *testing.T, c *http.Client, g *gw, req map[string]any) (int, []bundleLine, string) {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+g.addr+"/v1/gateway/call", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hreq.Host = g.name
	resp, err := c.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, nil, string(msg)
	}
	var lines []bundleLine
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l bundleLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return resp.StatusCode, lines, ""
}

// TestGatewayWaitIsRelative: a bundle says how long the call may wait
// (wait_ms) besides until when (wait_until, by the overlord's clock); a
// gateway whose clock is ahead of the overlord's by more than the wait
// still makes the call, for the wait it was given, rather than report
// every minion unsent.
func TestGatewayWaitIsRelative(t *testing.T) {
	f := miniontest.Start(t, miniontest.Config{Minions: 2})
	g := startGW(t, f, "gw1")
	c := ownClient(t, f)
	// The overlord's clock is 90 s behind the gateway's: its 30 s wait
	// ended a minute ago by the gateway's clock.
	code, lines, msg := postBundle(t, c, g, map[string]any{
		"job_id":     uuid.NewString(),
		"bundle":     1,
		"params":     map[string]any{"module": "test", "method": "ping"},
		"minions":    bundleOf(t, f, 0, 1),
		"forks":      4,
		"wait_until": time.Now().Add(-time.Minute),
		"wait_ms":    30000,
	})
	if code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", code, msg)
	}
	ok := 0
	for _, l := range lines {
		if l.End && len(l.Unsent) > 0 {
			t.Errorf("unsent %v: the gateway went by its own clock", l.Unsent)
		}
		if l.Result != nil && l.Result.State == status.Finished && l.Result.OK {
			ok++
		}
	}
	if ok != 2 {
		t.Errorf("%d minions answered, want 2: %+v", ok, lines)
	}
}

// stopBundle posts the stop of job to g as the client c, and returns its
// HTTP status.
func stopBundle(t *testing.T, c *http.Client, g *gw, job string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "https://"+g.addr+"/v1/gateway/stop/"+job, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestGatewayStopIsTheCallers: an identity cannot stop another
// identity's call on a gateway (Ctrl-C's POST /v1/gateway/stop/JOB) by
// its job ID; the caller can.
func TestGatewayStopIsTheCallers(t *testing.T) {
	f := miniontest.Start(t, miniontest.Config{Minions: 3})
	g := startGW(t, f, "gw1")
	op := ownClient(t, f)
	eve := gwClient(t, f, identity(t, f, "eve"))
	job := uuid.NewString()
	body, err := json.Marshal(map[string]any{
		"job_id":  job,
		"bundle":  1,
		"params":  map[string]any{"module": "test", "method": "sleep", "args": map[string]any{"seconds": 1}},
		"minions": bundleOf(t, f, 0, 1, 2),
		"forks":   1, // one after the other
		"wait_ms": 60000, "wait_until": time.Now().Add(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+g.addr+"/v1/gateway/call", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := op.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("HTTP %d: %s", resp.StatusCode, msg)
	}
	dec := json.NewDecoder(resp.Body)
	next := func() bundleLine {
		t.Helper()
		var l bundleLine
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("the answer broke off: %v", err)
		}
		return l
	}
	// The first minion has answered: the second is running.
	if l := next(); l.Result == nil || !l.Result.OK {
		t.Fatalf("first line %+v, want a minion's OK", l)
	}
	if code := stopBundle(t, eve, g, job); code != http.StatusNotFound {
		t.Errorf("eve stopped op's call: HTTP %d, want 404", code)
	}
	if l := next(); l.Result == nil || !l.Result.OK {
		t.Fatalf("second line %+v, want the second minion's OK (eve's stop must not cut it)", l)
	}
	if code := stopBundle(t, op, g, job); code != http.StatusNoContent {
		t.Errorf("op's own stop: HTTP %d, want 204", code)
	}
	// The stop ends the answer early: the third minion is cut short or
	// never sent the call, and each has one line.
	lines := map[string]int{}
	var end bundleLine
	for end = next(); !end.End; end = next() {
		lines[end.Minion]++
	}
	if lines[f.Names[2]] != 1 || len(lines) != 1 {
		t.Errorf("after the stop: %v, want one line, for %s", lines, f.Names[2])
	}
	if len(end.Unsent) > 1 || (len(end.Unsent) == 1 && end.Unsent[0] != f.Names[2]) {
		t.Errorf("unsent %v, want at most %s", end.Unsent, f.Names[2])
	}
}

// TestGatewayCall1200: a call to 1,200 minions behind one gateway (three
// bundles) ends with exactly one result for each, all OK, via the
// gateway, in the job record as in the results handed on.
func TestGatewayCall1200(t *testing.T) {
	if os.Getenv("OVERLORD_GATEWAY_SCALE") == "" {
		t.Skip("1,200 in-process minions (40-60 s): set OVERLORD_GATEWAY_SCALE=1 to run it")
	}
	f := miniontest.Start(t, miniontest.Config{Minions: 1200})
	startGW(t, f, "gw1")
	for _, n := range f.Names {
		if err := f.Overlord.Store.SetVia(n, []string{"gw1"}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := f.Overlord.Prepare(overlord.CallSpec{Target: "*", Module: "test", Method: "ping", Timeout: 2 * time.Minute,
		ConnectTimeout: 30 * time.Second}) // a loaded machine: exactness, not speed
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	job, err := f.Overlord.Call(context.Background(), p, func(name string, r status.Result) {
		seen[name]++
	})
	if err != nil {
		t.Fatal(err)
	}
	if job.State != status.Finished || len(job.Minions) != 1200 {
		t.Fatalf("job %s with %d minions, want FINISHED with 1200", job.State, len(job.Minions))
	}
	bad := map[string]int{}
	for _, n := range f.Names {
		r := job.Minions[n]
		if !r.OK || r.Via != "gw1" || seen[n] != 1 {
			bad[fmt.Sprintf("%s %v via %s, handed on %d times", r.State, r.Error, r.Via, seen[n])]++
		}
	}
	for what, n := range bad {
		t.Errorf("%d minions: %s; want OK via gw1, once", n, what)
	}
}

// inFlight is a module whose method holds a moment and notes how many of
// its calls ran at once, across every minion of a fleet.
type inFlight struct {
	mu       sync.Mutex
	now, max int
}

func (*inFlight) Name() string { return "inflight" }
func (*inFlight) Doc() string  { return "counts its calls in flight" }
func (g *inFlight) Methods() []*modules.Method {
	return []*modules.Method{{Name: "hold", Doc: "hold 300 ms", Run: func(ctx context.Context, _ modules.Args) (any, error) {
		g.mu.Lock()
		g.now++
		g.max = max(g.max, g.now)
		g.mu.Unlock()
		defer func() { g.mu.Lock(); g.now--; g.mu.Unlock() }()
		select {
		case <-time.After(300 * time.Millisecond): // a window for another call to overlap it
		case <-ctx.Done():
		}
		return true, nil
	}}}
}

// TestGatewayForksPerJob: the bundles of one call share its --forks on a
// gateway: two bundles of two minions each with --forks 1 never have two
// of their four calls running at once.
func TestGatewayForksPerJob(t *testing.T) {
	gauge := &inFlight{}
	reg := builtin.Registry()
	if err := reg.Add(gauge); err != nil {
		t.Fatal(err)
	}
	f := miniontest.Start(t, miniontest.Config{Minions: 4, Registry: reg})
	g := startGW(t, f, "gw1")
	c := ownClient(t, f)
	job := uuid.NewString()
	var wg sync.WaitGroup
	for b, idx := range [][]int{{0, 1}, {2, 3}} {
		wg.Go(func() {
			code, lines, msg := postBundle(t, c, g, map[string]any{
				"job_id":  job,
				"bundle":  b + 1,
				"params":  map[string]any{"module": "inflight", "method": "hold"},
				"minions": bundleOf(t, f, idx...),
				"forks":   1,
				"wait_ms": 60000, "wait_until": time.Now().Add(time.Minute),
			})
			if code != http.StatusOK {
				t.Errorf("bundle %d: HTTP %d: %s", b+1, code, msg)
				return
			}
			ok := 0
			for _, l := range lines {
				if l.Result != nil && l.Result.OK {
					ok++
				}
			}
			if ok != 2 {
				t.Errorf("bundle %d: %d OK, want 2: %+v", b+1, ok, lines)
			}
		})
	}
	wg.Wait()
	if gauge.max != 1 {
		t.Errorf("%d calls of the job ran at once with --forks 1, want 1", gauge.max)
	}
}

// TestGatewayRefusesOtherRoles: only overlord identities may use a
// gateway: another gateway's certificate, a minion's, or one of another
// CA are refused in the handshake.
func TestGatewayRefusesOtherRoles(t *testing.T) {
	f := miniontest.Start(t, miniontest.Config{Minions: 1})
	g := startGW(t, f, "gw1")
	ca, err := f.Overlord.Authority()
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *certs.Authority, name string, role certs.Role) tls.Certificate {
		cert, key, err := ca.Issue(name, role, certs.ECDSA)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}
	}
	other, err := certs.NewAuthority("other-ca", certs.ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	for what, id := range map[string]tls.Certificate{
		"gateway":      issue(ca, "gw2", certs.RoleGateway),
		"minion":       issue(ca, "m9", certs.RoleMinion),
		"another CA's": issue(other, "op", certs.RoleOverlord),
	} {
		c := gwClient(t, f, id)
		req, err := http.NewRequest(http.MethodGet, "https://"+g.addr+overlord.GatewayPingPath, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Errorf("a %s certificate was let in: HTTP %d", what, resp.StatusCode)
		}
	}
}

// TestGatewayCloseStuckClient: a caller that stops reading a bundle's
// answer (4 MB from each minion) holds up neither the gateway's
// shutdown past its grace nor the gateway.
func TestGatewayCloseStuckClient(t *testing.T) {
	f := miniontest.Start(t, miniontest.Config{Minions: 4})
	g := startGW(t, f, "gw1")
	c := ownClient(t, f)
	body, err := json.Marshal(map[string]any{
		"job_id": uuid.NewString(), "bundle": 1,
		"params": map[string]any{"module": "command", "method": "run",
			"args": map[string]any{"cmd": "head -c 4000000 /dev/zero | tr '\\0' a", "max_output": 4194304}},
		"minions": bundleOf(t, f, 0, 1, 2, 3),
		"forks":   4,
		"wait_ms": 60000, "wait_until": time.Now().Add(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, "https://"+g.addr+"/v1/gateway/call", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Read a little, then nothing: the gateway's writes block.
	if _, err := io.ReadFull(resp.Body, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		closed <- g.srv.Close(ctx)
	}()
	select {
	case <-closed:
	case <-time.After(time.Minute):
		t.Fatal("the gateway did not close within a minute of its 2 s grace, its caller not reading")
	}
	select {
	case <-g.srv.Done():
	case <-time.After(time.Minute):
		t.Fatal("the gateway's Done was not closed")
	}
}

// TestGatewayRefusesRevoked: an identity revoked after it connected to a
// gateway is refused there once an overlord's call has handed the gateway
// the new revocation list: on the connection it keeps (403) and at any
// new handshake. The list is kept in the gateway's state directory, and a
// damaged one stops the gateway from starting.
func TestGatewayRefusesRevoked(t *testing.T) {
	f := miniontest.Start(t, miniontest.Config{Minions: 1})
	g := startGW(t, f, "gw1")
	if err := f.Overlord.Store.SetVia(f.Names[0], []string{"gw1"}); err != nil {
		t.Fatal(err)
	}
	bot := gwClient(t, f, identity(t, f, "ci-bot"))
	stop := func(c *http.Client) (int, error) {
		resp, err := c.Post("https://"+g.addr+"/v1/gateway/stop/no-such-job", "application/json", nil)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body) // read whole: the connection is kept
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := stop(bot); err != nil || code != http.StatusNotFound {
		t.Fatalf("ci-bot before its revocation: %d, %v; want 404 (no such call)", code, err)
	}
	if _, err := f.Overlord.Revoke(overlord.RevokeSpec{Name: "ci-bot"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	p, err := f.Overlord.Prepare(overlord.CallSpec{Target: "*", Module: "test", Method: "ping", Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	job, err := f.Overlord.Call(context.Background(), p, nil)
	if err != nil || job.Summary.OK != 1 || job.Minions[f.Names[0]].Via != "gw1" {
		t.Fatalf("a call through gw1: %+v, %v", job, err)
	}
	if _, err := os.Stat(filepath.Join(g.dir, overlord.GatewayCRLFile)); err != nil {
		t.Fatalf("the gateway did not keep the list: %v", err)
	}
	if code, err := stop(bot); err != nil || code != http.StatusForbidden {
		t.Errorf("ci-bot on its open connection after its revocation: %d, %v; want 403", code, err)
	}
	if code, err := stop(gwClient(t, f, identity(t, f, "ci-bot"))); err != nil || code != http.StatusNotFound {
		t.Errorf("a new ci-bot certificate: %d, %v; want 404 (only the revoked one is refused)", code, err)
	}
	bot2 := gwClient(t, f, identity(t, f, "ci-bot-2"))
	if _, err := f.Overlord.Revoke(overlord.RevokeSpec{Name: "ci-bot-2"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	p, err = f.Overlord.Prepare(overlord.CallSpec{Target: "*", Module: "test", Method: "ping", Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Overlord.Call(context.Background(), p, nil); err != nil {
		t.Fatal(err)
	}
	if code, err := stop(bot2); err == nil {
		t.Errorf("ci-bot-2, revoked, at a new handshake: HTTP %d, want the handshake refused", code)
	}

	// A damaged list stops a gateway from starting, saying what to do.
	if err := os.WriteFile(filepath.Join(g.dir, overlord.GatewayCRLFile), []byte("not a list"), 0o644); err != nil {
		t.Fatal(err)
	}
	again := overlord.New(g.dir, "", 0, slog.New(slog.DiscardHandler))
	if _, err := again.OpenGateway(context.Background(), overlord.GatewayConfig{Listen: "127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "remove it") {
		t.Errorf("a gateway with a damaged list opened: %v", err)
	}
}
