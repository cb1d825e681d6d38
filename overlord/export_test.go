package overlord

import (
	"log/slog"
	"net"

	"github.com/overlordhq/overlord/rpc"
)

// OwnerOnly wraps ln as the service's socket is: only uid gets through.
func OwnerOnly(ln net.Listener, uid int) net.Listener {
	return &ownerOnly{Listener: ln, uid: uid, logger: slog.New(slog.DiscardHandler)}
}

// PoolClient returns the service's pool client (for benchmarks).
func (s *Service) PoolClient() *rpc.Client { return s.pool.client }
