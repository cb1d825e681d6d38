// Package etcdtest runs an etcd cluster in the test's process
// (go.etcd.io/etcd/server/v3/embed), on loopback, in t.TempDir().
package etcdtest

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// Cluster is an in-process etcd cluster.
type Cluster struct {
	Members []*embed.Etcd
	// Endpoints are the members' client URLs.
	Endpoints []string
}

// Start starts a cluster of n members on the given free ports (two per
// member: client, peer) and stops it when the test ends.
func Start(t testing.TB, n int, ports []int) *Cluster {
	t.Helper()
	if len(ports) < 2*n {
		t.Fatalf("etcdtest: %d members need %d ports", n, 2*n)
	}
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[2*i+1]))
	}
	c := &Cluster{}
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = t.TempDir()
		cu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]))
		pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]))
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "overlord-test"
		cfg.LogLevel = "error"
		cfg.MaxTxnOps = 1 << 16
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			c.Stop()
			t.Fatalf("etcdtest: start member %d: %v", i, err)
		}
		c.Members = append(c.Members, e)
		c.Endpoints = append(c.Endpoints, cu.String())
	}
	t.Cleanup(c.Stop)
	for i, e := range c.Members {
		select {
		case <-e.Server.ReadyNotify():
		case <-time.After(60 * time.Second):
			t.Fatalf("etcdtest: member %d not ready after 60 s", i)
		}
	}
	return c
}

// Client returns a client of the whole cluster, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Leader returns the index of the member that leads now, or -1.
func (c *Cluster) Leader() int {
	for i, e := range c.Members {
		if e == nil {
			continue
		}
		if e.Server.Leader() == e.Server.MemberID() {
			return i
		}
	}
	return -1
}

// StopMember stops member i (it stays stopped).
func (c *Cluster) StopMember(i int) {
	if e := c.Members[i]; e != nil {
		e.Close()
		c.Members[i] = nil
	}
}

// Stop stops every member.
func (c *Cluster) Stop() {
	for i := range c.Members {
		c.StopMember(i)
	}
}
