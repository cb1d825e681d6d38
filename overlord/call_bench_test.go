package overlord_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/minion/miniontest"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/rpc"
)

// BenchmarkCallPing fans test.ping out to a fleet of in-process minions
// through Overlord.Call, as `overlord call '*' test.ping` does: a fresh
// client per call (each CLI process has its own), so one TLS 1.3
// handshake with mutual authentication per minion, one JSON-RPC request
// each, and the job recorded in overlord.db (one create, then results
// written in batches). One op is one call to the whole fleet, at the
// default --forks. The overlord and every minion share this process, so
// both ends of each handshake are paid for here.
//
// Metrics besides ns/op: ms/fleet-call (the same, in milliseconds) and
// us/minion (ns/op shared among the fleet).
func BenchmarkCallPing(b *testing.B) {
	for _, bc := range []struct {
		minions int
		key     certs.KeyType
	}{
		{100, certs.ECDSA},
		{1000, certs.ECDSA},
		{1000, certs.Ed25519},
	} {
		b.Run(fmt.Sprintf("minions=%d,key=%s", bc.minions, bc.key), func(b *testing.B) {
			f := miniontest.Start(b, miniontest.Config{Minions: bc.minions, KeyType: bc.key})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				// Each call is a job of its own, with an ID of its own:
				// prepared outside the timer.
				b.StopTimer()
				// A benchmark measures: a handshake slowed by a busy
				// machine takes longer, it does not fail the run.
				p, err := f.Overlord.Prepare(overlord.CallSpec{Target: "*", Module: "test", Method: "ping",
					Timeout: time.Minute, ConnectTimeout: time.Minute})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				job, err := f.Overlord.Call(ctx, p, nil)
				if err != nil {
					b.Fatal(err)
				}
				if job.Summary.OK != bc.minions {
					for name, r := range job.Minions {
						if !r.OK {
							b.Errorf("%s: %+v", name, r.Error)
						}
					}
					b.Fatalf("%d of %d minions answered ok: %+v", job.Summary.OK, bc.minions, job.Summary)
				}
			}
			reportFleetMetrics(b, bc.minions)
		})
	}
}

// BenchmarkFanoutWarm is BenchmarkCallPing's fan-out without what a
// fresh call pays for: one client kept across ops with a keep-alive
// connection open to every minion, and no job record. Against
// BenchmarkCallPing it shows what the handshakes and the store cost.
func BenchmarkFanoutWarm(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("minions=%d", n), func(b *testing.B) {
			f := miniontest.Start(b, miniontest.Config{Minions: n})
			p, err := f.Overlord.Prepare(overlord.CallSpec{Target: "*", Module: "test", Method: "ping"})
			if err != nil {
				b.Fatal(err)
			}
			// Room for an idle connection to every minion.
			client, err := f.Overlord.Client(p.Minions, n, overlord.DefaultConnectTimeout)
			if err != nil {
				b.Fatal(err)
			}
			defer client.Close()
			params := rpc.CallParams{Module: "test", Method: "ping"}
			ctx := context.Background()
			ping := func() {
				failed := 0
				fanout.Run(ctx, p.Minions, fanout.DefaultForks,
					func(ctx context.Context, m jobs.Minion) error {
						var reply rpc.CallReply
						return client.Call(ctx, m.Name, "Minion.Call", params, &reply)
					},
					func(m jobs.Minion, err error) {
						if err != nil {
							failed++
							b.Errorf("%s: %v", m.Name, err)
						}
					})
				if failed > 0 {
					b.FailNow()
				}
			}
			ping() // open every connection
			b.ReportAllocs()
			for b.Loop() {
				ping()
			}
			reportFleetMetrics(b, n)
		})
	}
}

func reportFleetMetrics(b *testing.B, minions int) {
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(per)/float64(time.Millisecond), "ms/fleet-call")
	b.ReportMetric(float64(per)/float64(time.Microsecond)/float64(minions), "us/minion")
}

// BenchmarkServiceCall is BenchmarkCallPing through the overlord service
// (`overlord serve`): the call is made by another Overlord on the same
// state directory, as a CLI process would, and reaches the minions through
// the service's socket and its pool of warm HTTP/2 connections (opened by
// one call before the timer starts). One op is one recorded call to the
// whole fleet. Besides ns/op it reports the memory the pool's connections
// hold, both ends counted (the minions share this process): heap and
// goroutines per pooled connection, measured around the call that opens
// them.
//
// A fleet in one process needs about miniontest.FilesPerMinion open files
// per minion (both ends of each connection among them): 10,000 minions
// need a limit of 50,000 ('ulimit -n'); a size the limit does not allow
// is skipped, saying so.
func BenchmarkServiceCall(b *testing.B) {
	for _, n := range []int{1000, 3000, 10000} {
		b.Run(fmt.Sprintf("minions=%d", n), func(b *testing.B) {
			if err := miniontest.CheckFileLimit(n); err != nil {
				b.Skip(err)
			}
			f := miniontest.Start(b, miniontest.Config{Minions: n})
			svc, err := f.Overlord.OpenService(context.Background(), overlord.ServiceConfig{})
			if err != nil {
				b.Fatal(err)
			}
			defer svc.Close(context.Background())
			c := overlord.New(f.Dir, "", 0, nil)
			if how, ok := c.UseService(context.Background()); !ok {
				b.Fatal(how)
			}
			call := func() {
				p, err := c.Prepare(overlord.CallSpec{Target: "*", Module: "test", Method: "ping",
					Timeout: time.Minute, ConnectTimeout: time.Minute})
				if err != nil {
					b.Fatal(err)
				}
				job, err := c.Call(context.Background(), p, nil)
				if err != nil {
					b.Fatal(err)
				}
				if job.Summary.OK != n {
					b.Fatalf("%d of %d minions answered ok: %+v", job.Summary.OK, n, job.Summary)
				}
			}
			heap0, g0 := heapInUse(), runtime.NumGoroutine()
			call() // opens the pool's connections
			heap1, g1 := heapInUse(), runtime.NumGoroutine()
			b.ReportAllocs()
			for b.Loop() {
				call()
			}
			reportFleetMetrics(b, n)
			b.ReportMetric(float64(heap1-heap0)/float64(n)/1024, "KiB/conn")
			b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/conn")
		})
	}
}

// heapInUse returns the bytes of live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}
