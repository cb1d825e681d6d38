package overlord

import (
	"fmt"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/jobs"
)

// BenchmarkSubmitAsync times what `overlord call --async` does before it
// returns: read the registry, resolve the target, bind the arguments,
// record the job with one entry per minion, start the driver (here
// /bin/true, so that only the start is timed). No network is touched.
func BenchmarkSubmitAsync(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("minions=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			o := New(dir, "", 0, nil)
			if _, err := o.InitCA("bench", certs.ECDSA); err != nil {
				b.Fatal(err)
			}
			o.DriverCommand = []string{"/bin/true"}
			for i := range n {
				m := jobs.Minion{Name: fmt.Sprintf("web%04d", i), Addr: "127.0.0.1:1", Fingerprint: "x", AddedAt: time.Now()}
				if err := o.Store.AddMinion(m); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for b.Loop() {
				p, err := o.Prepare(CallSpec{Target: "web*", Module: "command", Method: "run", Words: []string{"make deploy"}})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := o.Submit(p, time.Hour); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
