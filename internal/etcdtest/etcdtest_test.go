package etcdtest_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/overlordhq/overlord/internal/etcdtest"
)

func freePorts(t *testing.T, n int) []int {
	var out []int
	for p := 20000 + int(time.Now().UnixNano()%20000); len(out) < n; p++ {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		out = append(out, p)
	}
	return out
}

func TestClusterSurvivesLeaderStop(t *testing.T) {
	c := etcdtest.Start(t, 3, freePorts(t, 6))
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	l := c.Leader()
	if l < 0 {
		t.Fatal("no leader")
	}
	c.StopMember(l)
	if _, err := cli.Put(ctx, "k", "v2"); err != nil {
		t.Fatalf("put after the leader stopped: %v", err)
	}
	r, err := cli.Get(ctx, "k")
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "v2" {
		t.Fatalf("get = %v, %v", r, err)
	}
}
