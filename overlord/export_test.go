package overlord

import (
	"log/slog"
	"net"
	"testing"
	"time"
)

// OwnerOnly wraps ln as the service's socket is: only uid gets through.
func OwnerOnly(ln net.Listener, uid int) net.Listener {
	return &ownerOnly{Listener: ln, uid: uid, logger: slog.New(slog.DiscardHandler)}
}

// SetDriverTimings shortens the driver's waits until the test ends: the
// submit retries' first backoff, the first probe of a queued minion
// (each doubled up to four times as much) and how long a minion may stay
// out of reach. The timings are package variables: a test that calls
// this must not run in parallel.
func SetDriverTimings(t testing.TB, submit, probe, unreachable time.Duration) {
	t.Helper()
	old := []time.Duration{submitBackoff, maxSubmitBackoff, queueProbeFirst, queueProbeMax, unreachableAfter}
	submitBackoff, maxSubmitBackoff = submit, 4*submit
	queueProbeFirst, queueProbeMax = probe, 4*probe
	unreachableAfter = unreachable
	t.Cleanup(func() {
		submitBackoff, maxSubmitBackoff, queueProbeFirst, queueProbeMax, unreachableAfter = old[0], old[1], old[2], old[3], old[4]
	})
}
