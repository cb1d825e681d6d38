package overlord

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// A fake gateway world: a CA, an overlord identity, and gateways served
// by handlers of the test over real mutual TLS (the gateway role).
type gwWorld struct {
	ca   *certs.Authority
	pool *x509.CertPool
	op   tls.Certificate
}

func newGWWorld(t *testing.T) *gwWorld {
	t.Helper()
	ca, err := certs.NewAuthority("test-ca", certs.ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &gwWorld{ca: ca, pool: pool, op: issueTLS(t, ca, "op", certs.RoleOverlord)}
}

func issueTLS(t *testing.T, ca *certs.Authority, name string, role certs.Role) tls.Certificate {
	t.Helper()
	cert, key, err := ca.Issue(name, role, certs.ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// gateway serves h as the gateway name over mutual TLS.
func (w *gwWorld) gateway(t *testing.T, name string, h http.HandlerFunc) rpc.Gateway {
	t.Helper()
	id := issueTLS(t, w.ca, name, certs.RoleGateway)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = certs.GatewayServerConfig(id, w.pool)
	srv.StartTLS()
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return rpc.Gateway{Name: name, Addr: srv.Listener.Addr().String(), Fingerprint: certs.Fingerprint(id.Leaf)}
}

// client is an overlord client that reaches every minion through gws.
func (w *gwWorld) client(gws ...rpc.Gateway) *rpc.Client {
	return rpc.NewClient(rpc.ClientConfig{
		TLS:        certs.ClientConfig(w.op, w.pool),
		Resolve:    func(string) (string, bool) { return "", false },
		Route:      func(string) []rpc.Gateway { return gws },
		GatewayTLS: certs.GatewayClientConfig(w.op, w.pool),
	})
}

// readBundle reads a bundle's request.
func readBundle(t *testing.T, r *http.Request) fanOutRequest {
	var req fanOutRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		t.Errorf("gateway: unreadable bundle: %v", err)
	}
	return req
}

func writeLine(w http.ResponseWriter, l fanOutLine) {
	_ = json.NewEncoder(w).Encode(l)
	w.(http.Flusher).Flush()
}

func okResult() *status.Result {
	return &status.Result{State: status.Finished, OK: true, Result: json.RawMessage(`true`)}
}

// honest answers every minion of a bundle OK, then End.
func honest(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req := readBundle(t, r)
		if left := time.Until(req.WaitUntil); req.WaitMS <= 0 || time.Duration(req.WaitMS)*time.Millisecond > left+time.Second {
			t.Errorf("the bundle's wait_ms is %d, want the time left of its wait (%s)", req.WaitMS, left)
		}
		for _, m := range req.Minions {
			writeLine(w, fanOutLine{Minion: m.Name, Result: okResult()})
		}
		writeLine(w, fanOutLine{End: true})
	}
}

// runBundles runs a call to minions behind gws with a wait of wait and
// returns every result handed on, each minion's in order.
func runBundles(t *testing.T, ctx context.Context, client *rpc.Client, names []string, wait time.Duration) (map[string][]status.Result, *handover) {
	t.Helper()
	h := &handover{waitUntil: time.Now().Add(wait), params: rpc.CallParams{Module: "test", Method: "ping"}}
	var minions []jobs.Minion
	for _, n := range names {
		minions = append(minions, jobs.Minion{Name: n, Addr: "127.0.0.1:1", Fingerprint: "00", Via: []string{"gw1", "gw2"}})
	}
	got := map[string][]status.Result{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fanOutCall(ctx, client, uuid.NewString(), h, minions, 10, func(context.Context, jobs.Minion) status.Result {
			t.Error("a minion behind gateways was called directly")
			return status.Result{State: status.Finished}
		}, func(m jobs.Minion, r status.Result) {
			got[m.Name] = append(got[m.Name], r)
		})
	}()
	// Never a silent hang: the wait, its grace and the bundle's, then a
	// margin for a loaded machine.
	select {
	case <-done:
	case <-time.After(wait + callGrace + bundleGrace + 30*time.Second):
		t.Fatal("the call did not end after its wait and grace")
	}
	return got, h
}

// runBundlesNoLimit is runBundles without its own bound.
func runBundlesNoLimit(t *testing.T, ctx context.Context, client *rpc.Client, names []string, wait time.Duration) (map[string][]status.Result, *handover) {
	h := &handover{waitUntil: time.Now().Add(wait), params: rpc.CallParams{Module: "test", Method: "ping"}}
	var minions []jobs.Minion
	for _, n := range names {
		minions = append(minions, jobs.Minion{Name: n, Addr: "127.0.0.1:1", Fingerprint: "00", Via: []string{"gw1", "gw2"}})
	}
	got := map[string][]status.Result{}
	fanOutCall(ctx, client, uuid.NewString(), h, minions, 10, func(context.Context, jobs.Minion) status.Result {
		t.Error("a minion behind gateways was called directly")
		return status.Result{State: status.Finished}
	}, func(m jobs.Minion, r status.Result) {
		got[m.Name] = append(got[m.Name], r)
	})
	return got, h
}

// TestBundleMisbehavingGateway: whatever the first gateway answers, every
// minion gets exactly one result: a gateway that turns the bundle down
// (HTTP 500, 409) hands it to the next; lines for minions not in the
// bundle, twice for one minion, or without a result are ignored; an
// answer that ends without End, breaks off, stalls or never starts
// leaves its unreported minions RUNNING (the driver adopts them), within
// the call's wait and grace, and never sends them to the next gateway.
func TestBundleMisbehavingGateway(t *testing.T) {
	names := []string{"m1", "m2", "m3", "m4"}
	type want struct {
		via   string
		state status.State
	}
	allVia := func(via string, state status.State) map[string]want {
		out := map[string]want{}
		for _, n := range names {
			out[n] = want{via, state}
		}
		return out
	}
	cases := []struct {
		name string
		gw1  func(t *testing.T) http.HandlerFunc
		wait time.Duration
		want map[string]want
	}{
		{"500", func(*testing.T) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) }
		}, 5 * time.Second, allVia("gw2", status.Finished)},
		{"409", func(*testing.T) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { http.Error(w, "already running", http.StatusConflict) }
		}, 5 * time.Second, allVia("gw2", status.Finished)},
		{"strangers, twice, no result", func(t *testing.T) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				req := readBundle(t, r)
				writeLine(w, fanOutLine{Minion: "stranger", Result: okResult()})
				writeLine(w, fanOutLine{Minion: req.Minions[0].Name})
				for _, m := range req.Minions {
					writeLine(w, fanOutLine{Minion: m.Name, Result: okResult()})
					writeLine(w, fanOutLine{Minion: m.Name, Result: &status.Result{State: status.Finished, Error: status.Errorf(status.KindInternal, "second")}})
				}
				writeLine(w, fanOutLine{End: true, Unsent: []string{"stranger"}})
			}
		}, 5 * time.Second, allVia("gw1", status.Finished)},
		{"half then no End", func(t *testing.T) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				req := readBundle(t, r)
				for _, m := range req.Minions[:2] {
					writeLine(w, fanOutLine{Minion: m.Name, Result: okResult()})
				}
			}
		}, 5 * time.Second, map[string]want{"m1": {"gw1", status.Finished}, "m2": {"gw1", status.Finished}, "m3": {"gw1", status.Running}, "m4": {"gw1", status.Running}}},
		{"half then connection cut", func(t *testing.T) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				req := readBundle(t, r)
				for _, m := range req.Minions[:2] {
					writeLine(w, fanOutLine{Minion: m.Name, Result: okResult()})
				}
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					conn.Close()
				}
			}
		}, 5 * time.Second, map[string]want{"m1": {"gw1", status.Finished}, "m2": {"gw1", status.Finished}, "m3": {"gw1", status.Running}, "m4": {"gw1", status.Running}}},
		{"stalls mid-stream", func(t *testing.T) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				req := readBundle(t, r)
				writeLine(w, fanOutLine{Minion: req.Minions[0].Name, Result: okResult()})
				<-r.Context().Done()
			}
		}, time.Second, map[string]want{"m1": {"gw1", status.Finished}, "m2": {"gw1", status.Running}, "m3": {"gw1", status.Running}, "m4": {"gw1", status.Running}}},
		{"never answers", func(t *testing.T) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				readBundle(t, r)
				<-r.Context().Done()
			}
		}, time.Second, allVia("gw1", status.Running)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newGWWorld(t)
			gw1 := w.gateway(t, "gw1", tc.gw1(t))
			gw2 := w.gateway(t, "gw2", honest(t))
			client := w.client(gw1, gw2)
			defer client.Close()
			got, _ := runBundles(t, context.Background(), client, names, tc.wait)
			if len(got) != len(names) {
				t.Errorf("results for %d minions, want %d: %v", len(got), len(names), got)
			}
			for _, n := range names {
				rs := got[n]
				if len(rs) != 1 {
					t.Errorf("%s: %d results, want exactly one: %+v", n, len(rs), rs)
					continue
				}
				if w := tc.want[n]; rs[0].State != w.state || rs[0].Via != w.via || (w.state == status.Finished && !rs[0].OK) {
					t.Errorf("%s: %+v, want %s via %s", n, rs[0], w.state, w.via)
				}
			}
		})
	}
}

// TestBundleBothDown: no gateway answers: every minion ends unreachable,
// naming both gateways.
func TestBundleBothDown(t *testing.T) {
	w := newGWWorld(t)
	gw1 := w.gateway(t, "gw1", honest(t))
	gw2 := w.gateway(t, "gw2", honest(t))
	gw1.Addr, gw2.Addr = "127.0.0.1:1", "127.0.0.1:1"
	client := w.client(gw1, gw2)
	defer client.Close()
	got, _ := runBundles(t, context.Background(), client, []string{"m1", "m2"}, 5*time.Second)
	for _, n := range []string{"m1", "m2"} {
		rs := got[n]
		if len(rs) != 1 || rs[0].State != status.Finished || rs[0].Error == nil || rs[0].Error.Kind != status.KindUnreachable {
			t.Fatalf("%s: %+v, want one result, unreachable", n, rs)
		}
		for _, gw := range []string{"via gateway gw1", "via gateway gw2"} {
			if msg := rs[0].Error.Message; !strings.Contains(msg, gw) {
				t.Errorf("%s: %q does not name %q", n, msg, gw)
			}
		}
	}
}

// stoppable is a gateway that answers the bundle's first minion, then
// waits for the call's stop (Ctrl-C): if honour, it reports the others
// unsent and ends, as 'overlord serve' does; if not, it takes the stop
// and keeps the answer open, sending nothing (a hung gateway).
func stoppable(t *testing.T, honour bool, sent chan<- struct{}) http.HandlerFunc {
	stopped := make(chan struct{})
	var once, first sync.Once
	return func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, gatewayStopPath) {
			once.Do(func() { close(stopped) })
			w.WriteHeader(http.StatusNoContent)
			return
		}
		req := readBundle(t, r)
		writeLine(w, fanOutLine{Minion: req.Minions[0].Name, Result: okResult()})
		first.Do(func() { close(sent) })
		select {
		case <-stopped:
		case <-r.Context().Done():
			return
		}
		if !honour {
			<-r.Context().Done()
			return
		}
		var unsent []string
		for _, m := range req.Minions[1:] {
			writeLine(w, fanOutLine{Minion: m.Name, Result: &status.Result{State: status.Running}})
			unsent = append(unsent, m.Name)
		}
		writeLine(w, fanOutLine{End: true, Unsent: append(unsent, "stranger")})
	}
}

// TestBundleCtrlC: Ctrl-C with a bundle in flight asks the gateway to
// stop; the minions it reports unsent (and only the bundle's) are the
// call's unsent; a gateway that takes the stop but never ends its answer
// holds the call up for a bounded time after Ctrl-C, not for the rest of
// the call's wait.
func TestBundleCtrlC(t *testing.T) {
	names := []string{"m1", "m2", "m3"}
	for _, honour := range []bool{true, false} {
		t.Run(fmt.Sprintf("honour=%v", honour), func(t *testing.T) {
			t.Parallel()
			w := newGWWorld(t)
			sent := make(chan struct{})
			gw1 := w.gateway(t, "gw1", stoppable(t, honour, sent))
			client := w.client(gw1)
			defer client.Close()
			ctx, cancel := context.WithCancel(context.Background())
			// Ctrl-C once the gateway has answered the first minion.
			go func() {
				<-sent
				cancel()
			}()
			const wait = 10 * time.Minute
			done := make(chan struct{})
			var got map[string][]status.Result
			var h *handover
			go func() {
				defer close(done)
				got, h = runBundlesNoLimit(t, ctx, client, names, wait)
			}()
			select {
			case <-done:
			case <-time.After(bundleStopGrace + 60*time.Second):
				t.Fatal("the call did not end within a minute of Ctrl-C (it waits for the rest of its 10 minutes)")
			}
			for _, n := range names {
				if len(got[n]) != 1 {
					t.Errorf("%s: %d results, want one: %+v", n, len(got[n]), got[n])
				}
			}
			if honour && fmt.Sprint(h.never) != "[m2 m3]" {
				t.Errorf("unsent %v, want [m2 m3] (the bundle's only)", h.never)
			}
			if !honour && len(h.never) != 0 {
				t.Errorf("unsent %v, want none: the gateway never said", h.never)
			}
		})
	}
}

// TestBundleGatewayPinned: a gateway is known by its certificate: on the
// first gateway's address, another gateway, or the same name with a
// certificate other than the one registered (added again since, or an
// impostor with a certificate of the CA), gets no bundle; the bundle
// goes to the next gateway.
func TestBundleGatewayPinned(t *testing.T) {
	w := newGWWorld(t)
	sent := func(t *testing.T) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			t.Errorf("the impostor got a bundle")
			http.Error(w, "no", http.StatusInternalServerError)
		}
	}
	other := w.gateway(t, "gw3", sent(t))
	reissued := w.gateway(t, "gw1", sent(t)) // gw1, with a certificate not registered
	gw2 := w.gateway(t, "gw2", honest(t))
	registered := issueTLS(t, w.ca, "gw1", certs.RoleGateway)
	for name, addr := range map[string]string{"another gateway": other.Addr, "another certificate": reissued.Addr} {
		t.Run(name, func(t *testing.T) {
			gw1 := rpc.Gateway{Name: "gw1", Addr: addr, Fingerprint: certs.Fingerprint(registered.Leaf)}
			client := w.client(gw1, gw2)
			defer client.Close()
			got, _ := runBundles(t, context.Background(), client, []string{"m1"}, 5*time.Second)
			if rs := got["m1"]; len(rs) != 1 || rs[0].Via != "gw2" || !rs[0].OK {
				t.Errorf("m1: %+v, want one result, OK via gw2", rs)
			}
		})
	}
}

// TestBundleSizes: 1,201 minions behind one gateway go in bundles of at
// most MaxBundle (500, 500, 201), each minion in one, each answered once.
func TestBundleSizes(t *testing.T) {
	w := newGWWorld(t)
	var mu sync.Mutex
	var sizes []int
	seen := map[string]int{}
	gw1 := w.gateway(t, "gw1", func(rw http.ResponseWriter, r *http.Request) {
		req := readBundle(t, r)
		mu.Lock()
		sizes = append(sizes, len(req.Minions))
		for _, m := range req.Minions {
			seen[m.Name]++
		}
		mu.Unlock()
		for _, m := range req.Minions {
			writeLine(rw, fanOutLine{Minion: m.Name, Result: okResult()})
		}
		writeLine(rw, fanOutLine{End: true})
	})
	client := w.client(gw1)
	defer client.Close()
	names := make([]string, 1201)
	for i := range names {
		names[i] = fmt.Sprintf("m%04d", i)
	}
	got, _ := runBundles(t, context.Background(), client, names, 30*time.Second)
	slices.Sort(sizes)
	if fmt.Sprint(sizes) != "[201 500 500]" {
		t.Errorf("bundles of %v, want [201 500 500]", sizes)
	}
	for _, n := range names {
		if seen[n] != 1 || len(got[n]) != 1 || !got[n][0].OK {
			t.Fatalf("%s: in %d bundles, results %+v; want one of each", n, seen[n], got[n])
		}
	}
}
