package overlord

import (
	"log/slog"
	"net"
)

// OwnerOnly wraps ln as the service's socket is: only uid gets through.
func OwnerOnly(ln net.Listener, uid int) net.Listener {
	return &ownerOnly{Listener: ln, uid: uid, logger: slog.New(slog.DiscardHandler)}
}
