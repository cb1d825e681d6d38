package minion

import (
	"strconv"
	"testing"
	"time"

	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// BenchmarkAsyncJob times a minion's whole async path for test.ping:
// Minion.Submit's record and spool, the runner process started, its
// result written and ingested, seen FINISHED by a status call.
func BenchmarkAsyncJob(b *testing.B) {
	a := newAsync(b, b.TempDir())
	defer a.Close()
	i := 0
	for b.Loop() {
		i++
		j, _, err := a.submit("bench", &rpc.SubmitParams{OriginJobID: strconv.Itoa(i), Module: "test", Method: "ping"})
		if err != nil {
			b.Fatal(err)
		}
		for {
			st, err := a.status(&rpc.StatusParams{JobIDs: []string{j.ID}, MaxOutput: -1}, "")
			if err != nil {
				b.Fatal(err)
			}
			if st[0].State == status.Finished {
				if !st[0].OK {
					b.Fatalf("job failed: %+v", st[0].Error)
				}
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
}
