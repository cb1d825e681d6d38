package etcdtest

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Proxy stands between a client and the cluster, so that a test can cut
// the client off (Cut) while the rest of the cluster and its other
// clients carry on, then let it back (Mend).
type Proxy struct {
	// Endpoints are the proxy's URLs, one per member.
	Endpoints []string

	lns   []net.Listener
	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// Proxy starts a proxy to every member's client URL, stopped when the
// test ends.
func (c *Cluster) Proxy(t testing.TB) *Proxy {
	t.Helper()
	p := &Proxy{conns: map[net.Conn]struct{}{}}
	for _, ep := range c.Endpoints {
		u, err := url.Parse(ep)
		if err != nil {
			t.Fatalf("etcdtest: endpoint %s: %v", ep, err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("etcdtest: proxy: %v", err)
		}
		p.lns = append(p.lns, ln)
		p.Endpoints = append(p.Endpoints, "http://"+ln.Addr().String())
		p.wg.Add(1)
		go p.serve(ln, u.Host)
	}
	t.Cleanup(p.close)
	return p
}

// Client returns a client of the cluster through the proxy, closed when
// the test ends.
func (p *Proxy) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: p.Endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func (p *Proxy) serve(ln net.Listener, target string) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.drop(c)
			up, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				return
			}
			if !p.track(up) {
				up.Close()
				return
			}
			defer p.drop(up)
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
			<-done
		}()
	}
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) drop(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// Cut closes every connection through the proxy and refuses new ones
// until Mend: the client is cut off from the cluster.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Mend lets the client connect again.
func (p *Proxy) Mend() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

func (p *Proxy) close() {
	for _, ln := range p.lns {
		ln.Close()
	}
	p.Cut()
	p.wg.Wait()
}
