//go:build linux

package e2e

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
)

// TestAPIAttack attacks the HTTP API of a real 'overlord serve' with real
// minions: certificates it must refuse, enrolment that must still work
// without one, requests that must be refused whole, routes called with
// the wrong method, an event stream that must carry a job's whole output,
// more event streams than the service keeps open, and a client that stops
// reading its stream while the service is told to stop.
func TestAPIAttack(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1")
	bot := filepath.Join(f.dir, "attack-bot.pem")
	if out, err := f.overlord("ca", "client", "attack-bot", "--bundle-out", bot); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// The grace is more than the 5 s Go's TLS gives its close_notify to a
	// client that does not read (crypto/tls closeNotify), and less than
	// the 30 s an event's write may take: a stream that held the shutdown
	// until its write timed out makes the grace run out.
	p, addr := startServeWith(t, f, "--grace", "15s")
	waitService(t, f, p)
	c := newAPIClient(t, f.stateDir, addr, bot)

	t.Run("certificates", func(t *testing.T) {
		c := c.with(t)
		ca, err := certs.LoadAuthority(f.stateDir)
		if err != nil {
			t.Fatal(err)
		}
		// Another overlord's CA, and an identity it issued.
		other := filepath.Join(f.dir, "other")
		if _, err := f.run("overlord", "--state-dir", other, "ca", "init"); err != nil {
			t.Fatal(err)
		}
		foreign := filepath.Join(f.dir, "foreign.pem")
		if _, err := f.run("overlord", "--state-dir", other, "ca", "client", "attack-bot", "--bundle-out", foreign); err != nil {
			t.Fatal(err)
		}
		foreignCert, foreignKey := readBundle(t, foreign)

		overlordRole := func(name string, notBefore, notAfter time.Time) *x509.Certificate {
			return &x509.Certificate{
				Subject:     pkix.Name{CommonName: name, OrganizationalUnit: []string{string(certs.RoleOverlord)}, Organization: []string{"overlord"}},
				NotBefore:   notBefore,
				NotAfter:    notAfter,
				KeyUsage:    x509.KeyUsageDigitalSignature,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			}
		}
		now := time.Now()
		expired, expiredKey := signLeaf(t, ca, overlordRole("attack-bot", now.Add(-48*time.Hour), now.Add(-time.Hour)))
		notYet, notYetKey := signLeaf(t, ca, overlordRole("attack-bot", now.Add(time.Hour), now.Add(48*time.Hour)))
		endpoint, endpointKey, err := ca.Issue("endpoint", certs.RoleEndpoint, certs.ECDSA)
		if err != nil {
			t.Fatal(err)
		}
		minionCert, minionKey := readBundle(t, f.minions["web1"].bundle)
		for _, tc := range []struct {
			name  string
			chain [][]byte
			key   crypto.Signer
			code  int
			kind  string
		}{
			{"another CA's identity", [][]byte{foreignCert.Raw}, foreignKey, 401, "unauthenticated"},
			{"another CA's identity with this CA in its chain", [][]byte{foreignCert.Raw, ca.Cert.Raw}, foreignKey, 401, "unauthenticated"},
			{"an expired identity of this CA", [][]byte{expired.Raw}, expiredKey, 401, "unauthenticated"},
			{"an identity of this CA not valid yet", [][]byte{notYet.Raw}, notYetKey, 401, "unauthenticated"},
			{"the CA's own certificate", [][]byte{ca.Cert.Raw}, ca.Key, 403, "denied"},
			{"the endpoint role", [][]byte{endpoint.Raw, ca.Cert.Raw}, endpointKey, 403, "denied"},
			{"a minion's", [][]byte{minionCert.Raw, ca.Cert.Raw}, minionKey, 403, "denied"},
			// The chain out of order, signed with the key of its second
			// certificate: the handshake proves the first, or fails.
			{"the CA's certificate first, a minion's key", [][]byte{ca.Cert.Raw, minionCert.Raw}, minionKey, 0, ""},
			{"a minion's certificate first, an identity's key", [][]byte{minionCert.Raw, foreignCert.Raw}, foreignKey, 0, ""},
		} {
			cc := newAPIClient(t, f.stateDir, addr, "")
			cc.hc.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{{Certificate: tc.chain, PrivateKey: tc.key}}
			if tc.code == 0 {
				resp, err := cc.hc.Get(cc.base + "/v1/jobs")
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					t.Errorf("%s: %d %s; want the handshake refused", tc.name, resp.StatusCode, b)
				}
				continue
			}
			if msg := cc.wantError(tc.code, tc.kind, "GET", "/v1/jobs", nil); msg == "" {
				t.Errorf("%s: no message", tc.name)
			}
		}

		// Revoked while its connection is kept alive: refused on that
		// same connection from the next request.
		short := filepath.Join(f.dir, "short-bot.pem")
		if out, err := f.overlord("ca", "client", "short-bot", "--bundle-out", short); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		sc := newAPIClient(t, f.stateDir, addr, short)
		if code, reused := sc.getReused("/v1/groups"); code != 200 || reused {
			t.Fatalf("first request: %d, reused %v", code, reused)
		}
		if out, err := f.overlord("ca", "revoke", "short-bot", "--role", "overlord"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if code, reused := sc.getReused("/v1/groups"); code != http.StatusForbidden || !reused {
			t.Errorf("after revocation, on the kept-alive connection: %d, reused %v; want 403 on the same connection", code, reused)
		}
		c.want(200, "GET", "/v1/groups", nil, nil) // others still get in
	})

	t.Run("enrolment needs no certificate", func(t *testing.T) {
		anon := newAPIClient(t, f.stateDir, addr, "")
		code, body := anon.do("POST", "/v1/enrol", `{"name": "web9"}`)
		var e struct{ Error struct{ Kind string } }
		if err := json.Unmarshal(body, &e); err != nil || code == http.StatusUnauthorized || e.Error.Kind == "unauthenticated" || e.Error.Kind == "" {
			t.Errorf("an enrolment request without a certificate: %d %s; want the endpoint's own refusal", code, body)
		}
	})

	t.Run("requests refused whole", func(t *testing.T) {
		c := c.with(t)
		before := c.jobCount()
		for _, req := range []string{
			// A field spelled in another case is not the field: a proxy
			// checking "target" would let through a call to another one.
			`{"target": "db*", "module": "test", "method": "ping", "Target": "web1"}`,
			`{"target": "db*", "module": "test", "method": "ping", "TARGET": "web1"}`,
			// The same field twice: which one counts is nobody's guess.
			`{"target": "db*", "module": "test", "method": "ping", "target": "web1"}`,
			`{"target": "web1", "module": "command", "method": "run", "args": {"cmd": "true", "cmd": "false"}}`,
			// Waits no minion keeps, past what a time.Duration adds up to.
			`{"target": "web1", "module": "test", "method": "ping", "timeout": "2562047h47m16s"}`,
			`{"target": "web1", "module": "test", "method": "ping", "timeout": "1000000h"}`,
			`{"target": "web1", "module": "test", "method": "ping", "connect_timeout": "2562047h47m16s"}`,
			`{"target": "web1", "module": "test", "method": "ping", "batch": "1", "batch_wait": "2562047h47m16s"}`,
			// Targets and conditions that take the service minutes to resolve.
			// (1 MiB of "*a" took 78 s; the bound refuses far less.)
			`{"target": "` + strings.Repeat("*a", 16<<10) + `b", "module": "test", "method": "ping"}`,
			`{"target": "` + strings.Repeat("web1,", 8<<10) + `web1", "module": "test", "method": "ping"}`,
			`{"target": "web1", "module": "test", "method": "ping", "where": [` + strings.Repeat(`"os=linux",`, 1000) + `"os=linux"]}`,
		} {
			code, body := c.do("POST", "/v1/jobs", req)
			var e struct {
				Error struct{ Kind, Message string }
			}
			if err := json.Unmarshal(body, &e); err != nil || code != http.StatusBadRequest || e.Error.Kind != "bad_args" {
				t.Errorf("%.80s: %d %.300s; want 400 bad_args", req, code, body)
			}
		}
		if after := c.jobCount(); after != before {
			t.Errorf("refused requests made jobs: %d before, %d after", before, after)
		}
		// overlord transmit reads the same request: a usage error.
		cmd, stdout, _ := overlordCmd(f, "transmit", "--direct")
		cmd.Stdin = strings.NewReader(`{"target": "db*", "module": "test", "method": "ping", "Target": "web1"}`)
		if code := exitCode(t, cmd); code != 2 || !strings.Contains(stdout.String(), "bad_args") {
			t.Errorf("transmit with a field in another case: exit %d\n%s", code, stdout)
		}
	})

	t.Run("wrong method", func(t *testing.T) {
		c := c.with(t)
		for _, tc := range []struct{ method, path, allow string }{
			{"GET", "/v1/jobs/ffffffff/cancel", "POST"},
			{"DELETE", "/v1/jobs", "GET, POST"},
			{"POST", "/v1/minions/web1", "GET"},
		} {
			req, err := http.NewRequest(tc.method, c.base+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != tc.allow {
				t.Errorf("%s %s: %d Allow %q %s; want 405 Allow %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"), b, tc.allow)
			}
		}
		c.wantError(http.StatusNotFound, "not_found", "GET", "/v1/nothing", nil)
	})

	t.Run("events carry the whole output", func(t *testing.T) {
		c := c.with(t)
		var job apiJob
		c.want(http.StatusCreated, "POST", "/v1/jobs", map[string]any{
			"target": "web1", "module": "command", "method": "run", "async": true,
			"args": map[string]any{"cmd": `printf 'a\n'; sleep 1; printf 'b\nc'`},
		}, &job)
		// One stream from the start, and one opened once the first has
		// had output: the second gets the output so far, then the rest.
		resp, err := c.hc.Get(c.base + "/v1/jobs/" + job.JobID + "/events")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		first := newSSEReader(resp.Body)
		var before []sseEvent
		for {
			e, ok := first.next()
			if !ok {
				t.Fatalf("the first stream ended: %v", before)
			}
			before = append(before, e)
			if e.name == "output" || e.name == "end" {
				break
			}
		}
		second := c.events(job.JobID)
		for {
			e, ok := first.next()
			if !ok {
				break
			}
			before = append(before, e)
		}
		for name, events := range map[string][]sseEvent{"first": before, "second": second} {
			var output strings.Builder
			for i, e := range events {
				switch {
				case i == 0 && e.name != "job":
					t.Errorf("%s stream: first event %s, want job", name, e.name)
				case e.name == "end" && i != len(events)-1:
					t.Errorf("%s stream: events after end: %v", name, events[i+1:])
				case e.name == "output":
					var o struct{ Minion, Data string }
					if err := json.Unmarshal(e.data, &o); err != nil {
						t.Fatal(err)
					}
					output.WriteString(o.Data)
				}
			}
			if events[len(events)-1].name != "end" {
				t.Errorf("%s stream: last event %s, want end", name, events[len(events)-1].name)
			}
			if got := output.String(); got != "a\nb\nc\n" {
				t.Errorf("%s stream: output events %q, want every line once", name, got)
			}
		}
	})

	// A long job to follow.
	var long apiJob
	c.want(http.StatusCreated, "POST", "/v1/jobs", map[string]any{
		"target": "web1", "module": "command", "method": "run", "async": true,
		"args": map[string]any{"cmd": "sleep 120"},
	}, &long)

	t.Run("event streams are bounded", func(t *testing.T) {
		c := c.with(t)
		// Every stream open at once: the service keeps MaxEventStreams
		// (64), and answers the next one 503 at once, so that streams
		// never take every connection the endpoint has (256).
		var bodies []io.Closer
		defer func() {
			for _, b := range bodies {
				b.Close()
			}
		}()
		busy := 0
		for range 80 {
			resp, err := c.hc.Get(c.base + "/v1/jobs/" + long.JobID + "/events")
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode == http.StatusServiceUnavailable {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !strings.Contains(string(b), `"busy"`) {
					t.Errorf("503: %s", b)
				}
				busy++
				continue
			}
			if resp.StatusCode != 200 {
				t.Fatalf("events: %d", resp.StatusCode)
			}
			bodies = append(bodies, resp.Body)
			// The first event: the stream is open.
			if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
				t.Fatal(err)
			}
		}
		if busy != 80-64 {
			t.Errorf("%d of 80 streams refused, want 16", busy)
		}
		// The rest of the API, and enrolment, still answer.
		c.want(200, "GET", "/v1/jobs?limit=1", nil, nil)
		anon := newAPIClient(t, f.stateDir, addr, "")
		if code, _ := anon.do("POST", "/v1/enrol", `{"name": "web9"}`); code != http.StatusBadRequest {
			t.Errorf("enrolment with the streams open: %d", code)
		}
	})

	t.Run("a client that stops reading does not hold up shutdown", func(t *testing.T) {
		c := c.with(t)
		var chatty apiJob
		c.want(http.StatusCreated, "POST", "/v1/jobs", map[string]any{
			"target": "web1", "module": "command", "method": "run", "async": true,
			// 6 MB of output, more than the sockets between hold.
			"args": map[string]any{"cmd": `for i in $(seq 6); do head -c 1000000 /dev/zero | tr '\0' x; echo; done; sleep 120`},
		}, &chatty)
		stuck := dialStuck(t, f, addr, bot, "/v1/jobs/"+chatty.JobID+"/events")
		defer stuck.Close()
		// A reader that keeps up, until the service has sent it all the
		// output: the stuck stream has been handed the same.
		follow := 0
		resp, err := c.hc.Get(c.base + "/v1/jobs/" + chatty.JobID + "/events")
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 64<<20)
		for follow < 6_000_000 && sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, `data: {"minion":"web1","data":`) {
				follow += len(line)
			}
		}
		resp.Body.Close()
		if follow < 6_000_000 {
			t.Fatalf("the reader got %d bytes of output: %v", follow, sc.Err())
		}
		if err := p.signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if !p.wait(stopTimeout) {
			t.Fatalf("overlord serve still running %s after SIGTERM", stopTimeout)
		}
		if p.err != nil {
			t.Errorf("overlord serve: %v after SIGTERM, want exit 0 within its grace:\n%s", p.err, p.logTail(10))
		}
		if log := p.logTail(30); strings.Contains(log, "grace period") {
			t.Errorf("the grace period ran out:\n%s", log)
		}
	})
}

// sseReader reads Server-Sent Events one at a time.
type sseReader struct{ sc *bufio.Scanner }

func newSSEReader(r io.Reader) *sseReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 64<<20)
	return &sseReader{sc}
}

// next returns the next event, or false at the end of the stream.
func (r *sseReader) next() (sseEvent, bool) {
	var cur sseEvent
	for r.sc.Scan() {
		line := r.sc.Text()
		switch {
		case line == "" && cur.name != "":
			return cur, true
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = append(cur.data, strings.TrimPrefix(line, "data: ")...)
		}
	}
	return sseEvent{}, false
}

// startServeWith starts 'overlord serve' with extra flags on a free
// loopback port for f's state directory; it is stopped when the test
// ends.
func startServeWith(t *testing.T, f *fleet, flags ...string) (*proc, string) {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := append([]string{"--state-dir", f.stateDir, "serve", "--listen", addr}, flags...)
	p, err := startProc(f.dir, filepath.Join(f.dir, "serve.log"), f.env, filepath.Join(binDir, "overlord"), args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.exited() {
			if err := p.terminate(stopTimeout); err != nil {
				t.Errorf("overlord serve: %v\n%s", err, p.logTail(20))
			}
		}
	})
	if err := waitPort(addr, true, readyTimeout, p); err != nil {
		t.Fatalf("%v\n%s", err, p.logTail(20))
	}
	return p, addr
}

// with returns c for a subtest's t.
func (c *apiClient) with(t *testing.T) *apiClient {
	cc := *c
	cc.t = t
	return &cc
}

// getReused makes a GET and reports its status and whether it went on a
// connection an earlier request had used.
func (c *apiClient) getReused(path string) (int, bool) {
	c.t.Helper()
	var reused bool
	req, err := http.NewRequest("GET", c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
	}))
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, reused
}

// dialStuck opens a TLS connection to the API as the identity in bundle
// with a small receive buffer, sends a GET of path, reads the answer's
// first bytes and then nothing more.
func dialStuck(t *testing.T, f *fleet, addr, bundle, path string) net.Conn {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(bundle, bundle)
	if err != nil {
		t.Fatal(err)
	}
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{
		InsecureSkipVerify: true, // the point is the client, not the server
		Certificates:       []tls.Certificate{cert},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: overlord\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("GET %s: %q %v", path, line, err)
	}
	return conn
}

// signLeaf signs tmpl with the CA for a new ECDSA key.
func signLeaf(t *testing.T, ca *certs.Authority, tmpl *x509.Certificate) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// readBundle returns the first certificate and the key of a PEM bundle.
func readBundle(t *testing.T, path string) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(path, path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c, pair.PrivateKey.(crypto.Signer)
}
