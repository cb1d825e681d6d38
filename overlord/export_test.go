package overlord

import (
	"log/slog"
	"net"
	"time"

	"github.com/overlordhq/overlord/job"
)

// OwnerOnly wraps ln as the service's socket is: only uid gets through.
func OwnerOnly(ln net.Listener, uid int) net.Listener {
	return &ownerOnly{Listener: ln, uid: uid, logger: slog.New(slog.DiscardHandler)}
}

// SetDriverTimings shortens the waits of o's in-process drivers (Drive):
// the submit retries' first backoff, the first probe of a queued minion
// (each doubled up to four times as much) and how long a minion may stay
// out of reach.
func SetDriverTimings(o *Overlord, submit, probe, unreachable time.Duration) {
	o.driverTimings = job.Timings{
		SubmitBackoff: submit, MaxSubmitBackoff: 4 * submit,
		QueueProbeFirst: probe, QueueProbeMax: 4 * probe,
		UnreachableAfter: unreachable,
	}
}
