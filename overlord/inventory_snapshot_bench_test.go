package overlord_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/overlordhq/overlord/minion/miniontest"
	"github.com/overlordhq/overlord/overlord"
)

// BenchmarkInventorySnapshot takes inventory snapshots of fleets of
// in-process minions, as 'overlord inventory snapshot' does: per minion
// one TLS handshake (a fresh client per snapshot), Minion.Describe and
// facts.all, then the version recorded. The minions all run on this host,
// so their facts are alike and bytes/minion is lower than a real fleet's
// (BenchmarkInventoryVersion has varied facts).
func BenchmarkInventorySnapshot(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("minions=%d", n), func(b *testing.B) {
			f := miniontest.Start(b, miniontest.Config{Minions: n})
			var v overlord.InventoryVersion
			for b.Loop() {
				var err error
				v, err = f.Overlord.InventorySnapshot(context.Background(), "*", overlord.SnapshotOptions{Timeout: time.Minute})
				if err != nil {
					b.Fatal(err)
				}
				if v.Unreachable != 0 {
					b.Fatalf("%d minions unreachable", v.Unreachable)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/snapshot")
			b.ReportMetric(float64(v.Bytes)/float64(n), "bytes/minion")
		})
	}
}
