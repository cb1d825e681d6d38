package rpc_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs/certstest"
	"github.com/overlordhq/overlord/rpc"
)

// A pool's client bounded by MaxConns keeps 7/8 of them for reuse, calls
// the minions past that on connections closed after the answer, and never
// holds more than MaxConns open, however many minions it calls at once.
func TestClientMaxConns(t *testing.T) {
	const minions, maxConns, keep = 12, 8, 7
	b := &Block{entered: make(chan struct{}, minions), release: make(chan struct{})}
	h, err := rpc.NewServer(map[string]any{"Echo": Echo{}, "Block": b})
	if err != nil {
		t.Fatal(err)
	}
	ca := certstest.NewCA(t)
	names := make([]string, minions)
	ts := httptest.NewUnstartedServer(h)
	for i := range names {
		names[i] = fmt.Sprintf("m%02d", i)
		if i == 0 {
			ts.TLS = certstest.ServerTLS(t, ca.Minion(names[i]))
		} else {
			// One listener, the certificate chosen by the name dialled.
			ts.TLS.Certificates = append(ts.TLS.Certificates, certstest.TLSCert(t, ca.Minion(names[i])))
		}
	}
	var mu sync.Mutex
	accepted := 0
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			accepted++
			mu.Unlock()
		}
	}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	defer ts.Close()
	addr := ts.Listener.Addr().String()
	c := rpc.NewClient(rpc.ClientConfig{TLS: certstest.ClientTLS(t, ca.Overlord("op")),
		Resolve: func(string) (string, bool) { return addr, true }, MaxPerMinion: 4, MaxConns: maxConns})
	defer c.Close()
	ctx := context.Background()
	round := func() {
		t.Helper()
		for _, n := range names {
			var r EchoReply
			if err := c.Call(ctx, n, "Echo.Say", EchoArgs{Text: n}, &r); err != nil || r.Text != n {
				t.Fatalf("%s: %q, %v", n, r.Text, err)
			}
		}
	}
	waitOpen := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if o, _ := c.Conns(); o == want {
				return
			}
			if time.Now().After(deadline) {
				o, _ := c.Conns()
				t.Fatalf("%d connections open, want %d", o, want)
			}
		}
	}
	accepts := func() int { mu.Lock(); defer mu.Unlock(); return accepted }

	round()
	waitOpen(keep)
	if got := accepts(); got != minions {
		t.Errorf("first round: %d connections accepted, want one per minion (%d)", got, minions)
	}
	round()
	if got := accepts(); got != 2*minions-keep {
		t.Errorf("second round: %d connections accepted in all, want %d: the %d kept reused, the others dialled again", got, 2*minions-keep, keep)
	}
	waitOpen(keep)

	// Every minion at once, each call held: the eighth connection is the
	// last until calls end; the rest wait for places, and all are made.
	errs := make(chan error, minions)
	for _, n := range names {
		go func() { errs <- c.Shared().Call(ctx, n, "Block.Wait", EchoArgs{}, &EchoReply{}) }()
	}
	for range maxConns {
		<-b.entered
	}
	close(b.release)
	for range minions {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if p := rpc.PeakConns(c); p > maxConns {
		t.Errorf("%d connections open at once, over MaxConns (%d)", p, maxConns)
	}
}
