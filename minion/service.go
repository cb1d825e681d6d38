package minion

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/overlordhq/overlord/internal/buildinfo"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// Service is the JSON-RPC service "Minion".
type Service struct {
	Name     string
	Registry *modules.Registry
	Logger   *slog.Logger
}

// Call runs a module method in-process and answers with its result.
func (s *Service) Call(r *http.Request, p *rpc.CallParams, reply *rpc.CallReply) error {
	timeout := DefaultCallTimeout
	if p.TimeoutMS > 0 {
		timeout = min(time.Duration(p.TimeoutMS)*time.Millisecond, MaxCallTimeout)
	} else if p.TimeoutMS < 0 {
		return rpc.NewError(status.Errorf(status.KindBadArgs, "timeout_ms must not be negative"), nil)
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	start := time.Now()
	res, err := s.Registry.Call(ctx, p.Module, p.Method, p.Args, p.Positional)
	reply.DurationMS = time.Since(start).Milliseconds()
	s.Logger.Debug("call", "identity", caller(r), "module", p.Module, "method", p.Method, "kind", kindOf(err), "ms", reply.DurationMS)
	if err != nil {
		return rpc.NewError(err, res)
	}
	raw, err := json.Marshal(res)
	if err != nil {
		return rpc.NewError(status.Errorf(status.KindInternal, "encode result: %v", err), nil)
	}
	reply.Result = raw
	return nil
}

// Describe returns the minion's modules with their methods and typed
// parameters.
func (s *Service) Describe(r *http.Request, _ *rpc.DescribeParams, reply *rpc.DescribeReply) error {
	reply.Name = s.Name
	reply.Version = buildinfo.Version()
	reply.Modules = s.Registry.DescribeAll()
	return nil
}

func caller(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	return r.TLS.PeerCertificates[0].Subject.CommonName
}

func kindOf(err error) status.Kind {
	if err == nil {
		return ""
	}
	return status.KindOf(err)
}
