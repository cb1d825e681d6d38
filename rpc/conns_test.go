package rpc_test

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs/certstest"
	"github.com/overlordhq/overlord/rpc"
)

// Block is a JSON-RPC service whose Wait returns when told to.
type Block struct {
	entered chan struct{}
	release chan struct{}
}

func (b *Block) Wait(_ *http.Request, _ *EchoArgs, _ *EchoReply) error {
	b.entered <- struct{}{}
	<-b.release
	return nil
}

// A pool's client (MaxPerMinion) counts its open connections, and as
// idle those beyond the calls in flight; others count none.
func TestClientConns(t *testing.T) {
	b := &Block{entered: make(chan struct{}), release: make(chan struct{})}
	h, err := rpc.NewServer(map[string]any{"Echo": Echo{}, "Block": b})
	if err != nil {
		t.Fatal(err)
	}
	ca := certstest.NewCA(t)
	ts := httptest.NewUnstartedServer(h)
	ts.TLS = certstest.ServerTLS(t, ca.Minion("web1"))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	defer ts.Close()
	addr := ts.Listener.Addr().String()
	cfg := rpc.ClientConfig{TLS: certstest.ClientTLS(t, ca.Overlord("op")),
		Resolve: func(string) (string, bool) { return addr, true }}
	plain := rpc.NewClient(cfg)
	defer plain.Close()
	cfg.MaxPerMinion = 8
	c := rpc.NewClient(cfg)
	defer c.Close()
	ctx := context.Background()
	check := func(when string, open, idle int) {
		t.Helper()
		if o, i := c.Conns(); o != open || i != idle {
			t.Errorf("%s: %d open, %d idle; want %d, %d", when, o, i, open, idle)
		}
	}
	check("before any call", 0, 0)
	for _, cl := range []*rpc.Client{plain, c} {
		if err := cl.Call(ctx, "web1", "Echo.Say", EchoArgs{Text: "hi"}, &EchoReply{}); err != nil {
			t.Fatal(err)
		}
	}
	if o, i := plain.Conns(); o != 0 || i != 0 {
		t.Errorf("a client without MaxPerMinion counts %d open, %d idle", o, i)
	}
	check("after a call", 1, 1)
	done := make(chan error, 1)
	go func() { done <- c.Shared().Call(ctx, "web1", "Block.Wait", EchoArgs{}, &EchoReply{}) }()
	<-b.entered
	check("during a call", 1, 0)
	close(b.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	check("after the second call", 1, 1)
	c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if o, _ := c.Conns(); o == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the connections closed are still counted open")
		}
	}
}
