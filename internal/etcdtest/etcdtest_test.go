package etcdtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/overlordhq/overlord/internal/etcdtest"
)

func TestClusterSurvivesLeaderStop(t *testing.T) {
	c := etcdtest.Start(t, 3, etcdtest.FreePorts(t, 6))
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
