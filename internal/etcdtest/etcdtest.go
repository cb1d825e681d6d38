// Package etcdtest runs an etcd cluster in the test's process
// (go.etcd.io/etcd/server/v3/embed), on loopback, in t.TempDir().
package etcdtest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Cluster is an in-process etcd cluster.
type Cluster struct {
	Members []*embed.Etcd
	// Endpoints are the members' client URLs.
	Endpoints []string
}

// Option changes the members' configuration.
type Option func(*embed.Config)

// MaxTxnOps sets the members' --max-txn-ops. Without it a member allows
// 65,536 operations a transaction; etcd's own default is
// embed.DefaultMaxTxnOps (128).
func MaxTxnOps(n uint) Option { return func(c *embed.Config) { c.MaxTxnOps = n } }

// EtcdDefaults leaves the limits at etcd's defaults (128 operations a
// transaction, 1.5 MiB a request), as an etcd-server package runs.
func EtcdDefaults() Option {
	return func(c *embed.Config) {
		c.MaxTxnOps = embed.DefaultMaxTxnOps
		c.MaxRequestBytes = embed.DefaultMaxRequestBytes
	}
}

// FreePorts returns n loopback TCP ports free now, below the kernel's
// ephemeral range: a port from that range (":0") is also handed out as
// the source port of outgoing connections, so one freed here could be
// taken before etcd binds it. They are picked at random, so that test
// processes running at once rarely try the same, and never twice in one
// process.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	lo, hi := 20000, ephemeralLow()
	if hi-lo < 1000 {
		lo = hi / 2
	}
	var out []int
	for tries := 0; len(out) < n; tries++ {
		if tries > 10000 {
			t.Fatalf("etcdtest: no free port in %d-%d", lo, hi)
		}
		p := lo + rand.IntN(hi-lo)
		if _, taken := given.LoadOrStore(p, true); taken {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		out = append(out, p)
		defer l.Close() // held until all are chosen
	}
	return out
}

// given is the ports FreePorts handed out in this process.
var given sync.Map

// ephemeralLow returns the first port of the kernel's ephemeral range
// (32768 if it cannot say).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low < 2048 {
		return 32768
	}
	return low
}

// Start starts a cluster of n members on the given free ports (two per
// member: client, peer) and stops it when the test ends.
func Start(t testing.TB, n int, ports []int, opts ...Option) *Cluster {
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
		// Its shutdown's "serving failed: server closed" lines are
		// not news, and would bury a failing test's output.
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		// A test's data need not survive a crash of the machine:
		// without fsync a commit costs CPU, not a disk flush.
		cfg.UnsafeNoFsync = true
		cfg.MaxTxnOps = 1 << 16
		for _, o := range opts {
			o(cfg)
		}
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
