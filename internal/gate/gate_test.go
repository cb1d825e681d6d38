package gate_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs/certstest"
	"github.com/overlordhq/overlord/internal/gate"
)

// waitFor is how long a test waits for the listener to get somewhere.
const waitFor = 10 * time.Second

// server is a gate.Server on loopback with a minion's TLS configuration
// (a client certificate required), serving /ok at once and /hold until
// release is closed.
type server struct {
	ln      *gate.Listener
	addr    string
	client  *tls.Config
	entered chan struct{} // a /hold request has started
	release chan struct{}
	once    sync.Once
}

// releaseAll lets the /hold requests answer.
func (s *server) releaseAll() { s.once.Do(func() { close(s.release) }) }

func newServer(t *testing.T, lim gate.Limits) *server {
	t.Helper()
	ca := certstest.NewCA(t)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: raw.Addr().String(), entered: make(chan struct{}, 16), release: make(chan struct{})}
	s.client = certstest.ClientTLS(t, ca.Overlord("op"))
	s.client.ServerName = "web1"
	s.ln = gate.NewListener(raw, certstest.ServerTLS(t, ca.Minion("web1")), lim, nil)
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		s.entered <- struct{}{}
		select {
		case <-s.release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "held")
	})
	srv := gate.Serve(&http.Server{Handler: mux}, s.ln)
	t.Cleanup(func() {
		s.releaseAll()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// client returns an HTTP client with its own connections.
func (s *server) httpClient(t *testing.T) *http.Client {
	tr := &http.Transport{TLSClientConfig: s.client.Clone()}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitFor}
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// waitStats waits until the listener's stats satisfy ok.
func waitStats(t *testing.T, l *gate.Listener, what string, ok func(gate.Stats) bool) gate.Stats {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		st := l.Stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %+v", waitFor, what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dialFrom opens a TCP connection to addr from source address src ("" for
// any), and waits until the listener has accepted it.
func dialFrom(t *testing.T, s *server, src string) net.Conn {
	t.Helper()
	before := s.ln.Stats().Accepted
	d := net.Dialer{Timeout: waitFor}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	waitStats(t, s.ln, "the connection to be accepted", func(st gate.Stats) bool { return st.Accepted > before })
	return c
}

// closedByServer reports whether the server has closed c (waiting for it
// up to waitFor if wait, else for a moment).
func closedByServer(c net.Conn, wait bool) bool {
	d := 50 * time.Millisecond
	if wait {
		d = waitFor
	}
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// checkEvicted checks that the first n of conns were closed by the
// server and the rest were not.
func checkEvicted(t *testing.T, conns []net.Conn, n int) {
	t.Helper()
	for i, c := range conns {
		if i < n && !closedByServer(c, true) {
			t.Errorf("connection %d of %d is still open; the oldest %d should have been closed", i, len(conns), n)
		}
		if i >= n && closedByServer(c, false) {
			t.Errorf("connection %d of %d was closed; only the oldest %d should have been", i, len(conns), n)
		}
	}
}

// One source's idle connections beyond MaxPendingPerSource close its
// oldest, and a real client from the same source still gets through.
func TestPendingPerSource(t *testing.T) {
	s := newServer(t, gate.Limits{MaxPendingPerSource: 4, MaxPending: 100})
	var conns []net.Conn
	for range 10 {
		conns = append(conns, dialFrom(t, s, ""))
	}
	st := waitStats(t, s.ln, "6 evictions", func(st gate.Stats) bool { return st.EvictedPending == 6 })
	if st.Pending != 4 {
		t.Errorf("%d pending connections, want 4: %+v", st.Pending, st)
	}
	checkEvicted(t, conns, 6)
	if body, err := get(s.httpClient(t), "https://"+s.addr+"/ok"); err != nil || body != "ok" {
		t.Errorf("a client with a certificate beside them: %q %v", body, err)
	}
}

// Idle connections from many sources beyond MaxPending close the oldest,
// whatever their source.
func TestPendingTotal(t *testing.T) {
	s := newServer(t, gate.Limits{MaxPendingPerSource: 4, MaxPending: 4})
	var conns []net.Conn
	for i := range 10 {
		conns = append(conns, dialFrom(t, s, fmt.Sprintf("127.0.0.%d", 2+i)))
	}
	st := waitStats(t, s.ln, "6 evictions", func(st gate.Stats) bool { return st.EvictedPending == 6 })
	if st.Pending != 4 {
		t.Errorf("%d pending connections, want 4: %+v", st.Pending, st)
	}
	checkEvicted(t, conns, 6)
	if body, err := get(s.httpClient(t), "https://"+s.addr+"/ok"); err != nil || body != "ok" {
		t.Errorf("a client with a certificate beside them: %q %v", body, err)
	}
}

// stallConn lets its first write (the ClientHello) through and holds
// the next until release is closed.
type stallConn struct {
	net.Conn
	writes  int
	release chan struct{}
}

func (c *stallConn) Write(b []byte) (int, error) {
	c.writes++
	if c.writes > 1 {
		<-c.release
	}
	return c.Conn.Write(b)
}

// A connection whose handshake has started is not closed to make room
// while the source has idle ones: they go first, even when newer.
func TestHelloKeptOverSilent(t *testing.T) {
	s := newServer(t, gate.Limits{MaxPendingPerSource: 3, MaxPending: 100})
	sc := &stallConn{Conn: dialFrom(t, s, ""), release: make(chan struct{})}
	tc := tls.Client(sc, s.client)
	done := make(chan error, 1)
	go func() { done <- tc.Handshake() }()
	waitStats(t, s.ln, "the ClientHello", func(st gate.Stats) bool { return st.Hello == 1 })
	var idle []net.Conn
	for range 5 {
		idle = append(idle, dialFrom(t, s, ""))
	}
	st := waitStats(t, s.ln, "3 evictions", func(st gate.Stats) bool { return st.EvictedPending == 3 })
	if st.Hello != 1 {
		t.Fatalf("the stalled handshake was closed: %+v", st)
	}
	checkEvicted(t, idle, 3)
	close(sc.release)
	if err := <-done; err != nil {
		t.Fatalf("handshake: %v", err)
	}
	fmt.Fprintf(tc, "GET /ok HTTP/1.1\r\nHost: web1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatalf("request after the handshake: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("HTTP %d", resp.StatusCode)
	}
	tc.Close()
}

// A connection that has not finished its handshake within the timeout is
// closed: one that sent nothing, one that sent half a ClientHello.
func TestHandshakeTimeout(t *testing.T) {
	s := newServer(t, gate.Limits{HandshakeTimeout: 300 * time.Millisecond})
	idle := dialFrom(t, s, "")
	half := dialFrom(t, s, "")
	half.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03})
	for name, c := range map[string]net.Conn{"idle": idle, "half a ClientHello": half} {
		if !closedByServer(c, true) {
			t.Errorf("%s: still open after %s", name, waitFor)
		}
	}
	st := waitStats(t, s.ln, "2 timeouts", func(st gate.Stats) bool { return st.TimedOut == 2 })
	if st.Pending != 0 || st.EvictedPending != 0 {
		t.Errorf("%+v", st)
	}
	if body, err := get(s.httpClient(t), "https://"+s.addr+"/ok"); err != nil || body != "ok" {
		t.Errorf("a client with a certificate after them: %q %v", body, err)
	}
}

// At MaxConns, a new connection closes the one idle longest; one with a
// request in flight is never closed, and if all are busy the new one is.
func TestOpenEviction(t *testing.T) {
	s := newServer(t, gate.Limits{MaxConns: 2})
	url := "https://" + s.addr
	idle := s.httpClient(t)
	if _, err := get(idle, url+"/ok"); err != nil {
		t.Fatal(err)
	}
	waitStats(t, s.ln, "an idle connection", func(st gate.Stats) bool { return st.Idle == 1 })
	busy := make(chan error, 2)
	hold := func() {
		body, err := get(s.httpClient(t), url+"/hold")
		if err == nil && body != "held" {
			err = fmt.Errorf("answer %q", body)
		}
		busy <- err
	}
	go hold()
	<-s.entered
	// Two open: one idle, one busy. A third closes the idle one.
	if body, err := get(s.httpClient(t), url+"/ok"); err != nil || body != "ok" {
		t.Fatalf("at MaxConns with one idle: %q %v", body, err)
	}
	waitStats(t, s.ln, "an idle connection closed, another idle", func(st gate.Stats) bool { return st.EvictedIdle == 1 && st.Idle == 1 })
	// Now the one idle is the third's; a second request in flight takes
	// its place.
	go hold()
	<-s.entered
	waitStats(t, s.ln, "a second idle connection closed", func(st gate.Stats) bool { return st.EvictedIdle == 2 && st.Open == 2 })
	// Both busy: a new connection is closed after its handshake.
	if _, err := get(s.httpClient(t), url+"/ok"); err == nil {
		t.Errorf("served a third connection beside two busy ones, with MaxConns 2")
	}
	st := waitStats(t, s.ln, "a refusal", func(st gate.Stats) bool { return st.Refused >= 1 })
	if st.EvictedIdle != 2 {
		t.Errorf("a busy connection was closed to make room: %+v", st)
	}
	s.releaseAll()
	for range 2 {
		if err := <-busy; err != nil {
			t.Errorf("a request in flight at MaxConns: %v", err)
		}
	}
}

// Fit shrinks the limits to the open files allowed, in proportion.
func TestFit(t *testing.T) {
	l, ok := gate.Limits{}.Fit(1<<20, 256)
	if !ok || l.MaxConns != gate.DefaultMaxConns || l.MaxPending != gate.DefaultMaxPending {
		t.Errorf("with room to spare: %+v %v", l, ok)
	}
	l, ok = gate.Limits{}.Fit(1024, 256)
	if ok || l.MaxConns+l.MaxPending > 1024-256 || l.MaxConns < 300 || l.MaxPendingPerSource > l.MaxPending {
		t.Errorf("with 1024 open files: %+v %v", l, ok)
	}
	if l.HandshakeTimeout != gate.DefaultHandshakeTimeout {
		t.Errorf("handshake timeout %s", l.HandshakeTimeout)
	}
}

// With one pending place per source, each new connection replaces the
// last, and the source is counted once.
func TestPendingPerSourceOne(t *testing.T) {
	s := newServer(t, gate.Limits{MaxPendingPerSource: 1, MaxPending: 100})
	var conns []net.Conn
	for range 4 {
		conns = append(conns, dialFrom(t, s, ""))
	}
	st := waitStats(t, s.ln, "3 evictions", func(st gate.Stats) bool { return st.EvictedPending == 3 })
	if st.Pending != 1 {
		t.Errorf("%d pending connections, want 1: %+v", st.Pending, st)
	}
	checkEvicted(t, conns, 3)
}
