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
	jobs     *asyncJobs // nil: async jobs are off
	files    *transfers
	rev      *revocation // Minion.UpdateCRL (revocation.go)
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

// Submit starts an async job, or returns the job already started for the
// same caller and origin job ID.
func (s *Service) Submit(r *http.Request, p *rpc.SubmitParams, reply *rpc.SubmitReply) error {
	if s.jobs == nil {
		return rpc.NewError(errNoAsync, nil)
	}
	job, created, err := s.jobs.submit(caller(r), p)
	if err != nil {
		return rpc.NewError(err, nil)
	}
	s.Logger.Debug("submit", "identity", caller(r), "origin", p.OriginJobID, "job", job.ID, "created", created, "module", p.Module, "method", p.Method)
	reply.JobID, reply.Created = job.ID, created
	return nil
}

// Status returns the state of async jobs, with their output from an offset.
func (s *Service) Status(r *http.Request, p *rpc.StatusParams, reply *rpc.StatusReply) error {
	if s.jobs == nil {
		return rpc.NewError(errNoAsync, nil)
	}
	if len(p.JobIDs) > 10000 {
		return rpc.NewError(status.Errorf(status.KindBadArgs, "at most 10000 job_ids per call"), nil)
	}
	jobs, err := s.jobs.status(p)
	if err != nil {
		return rpc.NewError(err, nil)
	}
	if p.WaitMS > 0 {
		if jobs, err = s.jobs.waitChange(r.Context(), p, jobs); err != nil {
			return rpc.NewError(err, nil)
		}
	}
	reply.Jobs = jobs
	return nil
}

// Cancel stops an async job and its whole process group.
func (s *Service) Cancel(r *http.Request, p *rpc.CancelParams, reply *rpc.CancelReply) error {
	if s.jobs == nil {
		return rpc.NewError(errNoAsync, nil)
	}
	switch p.Reason {
	case "", status.KindCancelled, status.KindTimeout:
	default:
		return rpc.NewError(status.Errorf(status.KindBadArgs, "reason must be cancelled or timeout, not %q", p.Reason), nil)
	}
	st, err := s.jobs.cancel(p.JobID, p.Reason)
	if err != nil {
		return rpc.NewError(err, nil)
	}
	reply.JobStatus = st
	return nil
}

// List returns the minion's async jobs, newest first.
func (s *Service) List(r *http.Request, p *rpc.ListParams, reply *rpc.ListReply) error {
	if s.jobs == nil {
		return rpc.NewError(errNoAsync, nil)
	}
	jobs, err := s.jobs.list(p.Limit)
	if err != nil {
		return rpc.NewError(err, nil)
	}
	reply.Jobs = jobs
	return nil
}

// WriteChunk receives one chunk of a file being copied to this minion
// (overlord cp).
func (s *Service) WriteChunk(r *http.Request, p *rpc.WriteChunkParams, reply *rpc.WriteChunkReply) error {
	out, err := s.files.write(caller(r), p)
	if err != nil {
		return rpc.NewError(err, nil)
	}
	*reply = out
	return nil
}

// ReadChunk sends part of a file (overlord fetch).
func (s *Service) ReadChunk(r *http.Request, p *rpc.ReadChunkParams, reply *rpc.ReadChunkReply) error {
	out, err := readChunk(p)
	if err != nil {
		return rpc.NewError(err, nil)
	}
	*reply = out
	return nil
}
