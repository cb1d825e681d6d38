package minion

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/overlordhq/overlord/internal/buildinfo"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// Service is the JSON-RPC service "Minion". Every call that runs
// something is checked against the ACL first and written to the audit
// log; one that could not be written there is refused before it runs.
// Its zero value refuses such calls: Server makes it with its ACL and
// audit log.
type Service struct {
	Name     string
	Registry *modules.Registry
	Logger   *slog.Logger
	jobs     *asyncJobs // nil: async jobs are off
	files    *transfers
	acl      *acl        // nil: everything denied
	audit    *auditLog   // nil: every call that would be recorded refused
	rev      *revocation // Minion.UpdateCRL (revocation.go)
}

// record writes an audit entry. The call it records has been let run
// (auditLog.ready said the entry would fit); if the entry cannot be
// written after all (the disk filled meanwhile), it goes to the daemon's
// log in full, and the calls that follow are refused until the audit log
// can be written again.
func (s *Service) record(r *http.Request, e AuditEntry, err error) {
	c := callerOf(r)
	e.Identity, e.Via, e.Remote, e.Outcome = c.identity, c.via, r.RemoteAddr, "ok"
	if err != nil {
		e.Outcome, e.Message = string(status.KindOf(err)), err.Error()
	}
	if aerr := s.audit.record(e); aerr != nil {
		s.logger().Error("audit log: could not record a call", "err", aerr, "identity", e.Identity, "via", e.Via, "remote", e.Remote,
			"rpc", e.RPC, "call", e.Call, "args_sha256", e.ArgsSHA256, "job", e.JobID, "origin", e.OriginJobID, "outcome", e.Outcome)
	}
}

func (s *Service) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Call runs a module method in-process and answers with its result.
func (s *Service) Call(r *http.Request, p *rpc.CallParams, reply *rpc.CallReply) error {
	start := time.Now()
	res, err := s.call(r, p, reply)
	// A call that outlived its wait names the job that carries it on.
	s.record(r, AuditEntry{RPC: "Minion.Call", Call: p.Module + "." + p.Method, ArgsSHA256: argsDigest(p.Args, p.Positional),
		DurationMS: time.Since(start).Milliseconds(), JobID: reply.JobID, OriginJobID: p.OriginJobID}, err)
	if err != nil {
		return rpc.NewError(err, res)
	}
	return nil
}

func (s *Service) call(r *http.Request, p *rpc.CallParams, reply *rpc.CallReply) (any, error) {
	timeout := DefaultCallTimeout
	if p.TimeoutMS > 0 {
		timeout = min(time.Duration(p.TimeoutMS)*time.Millisecond, MaxCallTimeout)
	} else if p.TimeoutMS < 0 {
		return nil, status.Errorf(status.KindBadArgs, "timeout_ms must not be negative")
	}
	if err := modules.CheckCall(p.Module, p.Method); err != nil {
		return nil, err
	}
	if err := s.acl.allow(caller(r), p.Module, p.Method); err != nil {
		return nil, err
	}
	if err := s.audit.ready(); err != nil {
		return nil, err
	}
	start := time.Now()
	var res any
	var err error
	if p.OriginJobID != "" && s.jobs != nil {
		// A call that may outlive its wait (held.go).
		var job *Job
		res, job, err = s.jobs.callHeld(r.Context(), caller(r), p, timeout, func(ctx context.Context) (any, error) {
			return s.Registry.Call(ctx, p.Module, p.Method, p.Args, p.Positional)
		})
		if job != nil {
			reply.Detached, reply.JobID = true, job.ID
			reply.DurationMS = time.Since(start).Milliseconds()
			s.logger().Debug("call detached", "identity", caller(r), "via", callerOf(r).via, "module", p.Module, "method", p.Method, "job", job.ID)
			return nil, nil
		}
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		res, err = s.Registry.Call(ctx, p.Module, p.Method, p.Args, p.Positional)
		cancel()
	}
	reply.DurationMS = time.Since(start).Milliseconds()
	s.logger().Debug("call", "identity", caller(r), "via", callerOf(r).via, "module", p.Module, "method", p.Method, "kind", kindOf(err), "ms", reply.DurationMS)
	if err != nil {
		return res, err
	}
	raw, err := rpc.EncodeResult(res)
	if err != nil {
		return nil, err
	}
	reply.Result = raw
	return nil, nil
}

// Describe returns the minion's modules with their methods and typed
// parameters.
func (s *Service) Describe(r *http.Request, _ *rpc.DescribeParams, reply *rpc.DescribeReply) error {
	reply.Name = s.Name
	reply.Version = buildinfo.Version()
	if s.Registry != nil {
		reply.Modules = s.Registry.DescribeAll()
	}
	return nil
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
	var job Job
	err := modules.CheckCall(p.Module, p.Method)
	if err == nil {
		err = s.acl.allow(caller(r), p.Module, p.Method)
	}
	if err == nil && s.jobs == nil {
		err = errNoAsync
	}
	if err == nil {
		err = s.audit.ready()
	}
	if err == nil {
		job, reply.Created, err = s.jobs.submit(caller(r), p)
	}
	if err == nil || reply.Created {
		s.logger().Debug("submit", "identity", caller(r), "via", callerOf(r).via, "origin", p.OriginJobID, "job", job.ID, "created", reply.Created, "module", p.Module, "method", p.Method)
	}
	if err != nil || reply.Created { // a retried Submit is not a new call
		s.record(r, AuditEntry{RPC: "Minion.Submit", Call: p.Module + "." + p.Method, ArgsSHA256: argsDigest(p.Args, p.Positional),
			JobID: job.ID, OriginJobID: p.OriginJobID}, err)
	}
	if err != nil {
		return rpc.NewError(err, nil)
	}
	reply.JobID = job.ID
	return nil
}

// Status returns the state of the caller's async jobs, with their output
// from an offset.
func (s *Service) Status(r *http.Request, p *rpc.StatusParams, reply *rpc.StatusReply) error {
	if s.jobs == nil {
		return rpc.NewError(errNoAsync, nil)
	}
	switch {
	case len(p.JobIDs) > MaxStatusJobs:
		return rpc.NewError(status.Errorf(status.KindBadArgs, "at most %d job_ids per call, got %d", MaxStatusJobs, len(p.JobIDs)), nil)
	case p.WaitMS > 0 && len(p.JobIDs) > MaxWaitJobs:
		return rpc.NewError(status.Errorf(status.KindBadArgs, "at most %d job_ids per call with wait_ms, got %d", MaxWaitJobs, len(p.JobIDs)), nil)
	}
	p.JobIDs = distinct(p.JobIDs)
	jobs, err := s.jobs.status(p, caller(r))
	if err != nil {
		return rpc.NewError(err, nil)
	}
	if p.WaitMS > 0 {
		if jobs, err = s.jobs.waitChange(r.Context(), p, caller(r), jobs); err != nil {
			return rpc.NewError(err, nil)
		}
	}
	reply.Jobs = jobs
	return nil
}

// distinct returns ids without repeats, in the order of their first
// appearance.
func distinct(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// Cancel stops one of the caller's async jobs and its whole process group.
func (s *Service) Cancel(r *http.Request, p *rpc.CancelParams, reply *rpc.CancelReply) error {
	if s.jobs == nil {
		return rpc.NewError(errNoAsync, nil)
	}
	switch p.Reason {
	case "", status.KindCancelled, status.KindTimeout:
	default:
		return rpc.NewError(status.Errorf(status.KindBadArgs, "reason must be cancelled or timeout, not %q", p.Reason), nil)
	}
	var st rpc.JobStatus
	err := s.audit.ready()
	if err == nil {
		st, err = s.jobs.cancel(p.JobID, p.Reason, caller(r))
	}
	s.record(r, AuditEntry{RPC: "Minion.Cancel", JobID: p.JobID, Call: st.Module + "." + st.Method}, err)
	if err != nil {
		return rpc.NewError(err, nil)
	}
	reply.JobStatus = st
	return nil
}

// Adopt returns the job a Minion.Call of the caller's origin job left
// (held.go); it never starts one.
func (s *Service) Adopt(r *http.Request, p *rpc.AdoptParams, reply *rpc.SubmitReply) error {
	if s.jobs == nil {
		return rpc.NewError(errNoAsync, nil)
	}
	if p.OriginJobID == "" || len(p.OriginJobID) > MaxOriginJobID {
		return rpc.NewError(status.Errorf(status.KindBadArgs, "origin_job_id is required, at most %d bytes", MaxOriginJobID), nil)
	}
	job, err := s.jobs.adopt(caller(r), p.OriginJobID)
	s.logger().Debug("adopt", "identity", caller(r), "via", callerOf(r).via, "origin", p.OriginJobID, "job", job.ID, "kind", kindOf(err))
	if err != nil {
		return rpc.NewError(err, nil)
	}
	reply.JobID = job.ID
	return nil
}

// List returns the caller's async jobs, newest first.
func (s *Service) List(r *http.Request, p *rpc.ListParams, reply *rpc.ListReply) error {
	if s.jobs == nil {
		return rpc.NewError(errNoAsync, nil)
	}
	jobs, err := s.jobs.list(p.Limit, caller(r))
	if err != nil {
		return rpc.NewError(err, nil)
	}
	reply.Jobs = jobs
	return nil
}

// WriteChunk receives one chunk of a file being copied to this minion
// (overlord cp; the ACL calls it file.cp).
func (s *Service) WriteChunk(r *http.Request, p *rpc.WriteChunkParams, reply *rpc.WriteChunkReply) error {
	err := s.acl.allow(caller(r), "file", "cp")
	var out rpc.WriteChunkReply
	if err == nil {
		err = s.audit.ready()
	}
	if err == nil {
		out, err = s.files.write(caller(r), p)
	}
	// A transfer is recorded at its first chunk and its last, and
	// wherever it fails.
	if err != nil || p.Offset == 0 || p.Final {
		msg := fmt.Sprintf("%s (offset %d, %d bytes)", p.Path, p.Offset, len(p.Data))
		if p.Final {
			msg = fmt.Sprintf("%s (last chunk, %d bytes in all)", p.Path, p.Offset+int64(len(p.Data)))
		}
		s.record(r, AuditEntry{RPC: "Minion.WriteChunk", Call: "file.cp", ArgsSHA256: p.SHA256, JobID: p.TransferID, Message: msg}, err)
	}
	if err != nil {
		return rpc.NewError(err, nil)
	}
	*reply = out
	return nil
}

// ReadChunk sends part of a file (overlord fetch; the ACL calls it
// file.fetch).
func (s *Service) ReadChunk(r *http.Request, p *rpc.ReadChunkParams, reply *rpc.ReadChunkReply) error {
	err := s.acl.allow(caller(r), "file", "fetch")
	var out rpc.ReadChunkReply
	if err == nil {
		err = s.audit.ready()
	}
	if err == nil {
		out, err = readChunk(r.Context(), p)
	}
	// Every chunk is a read of the file: each is recorded.
	s.record(r, AuditEntry{RPC: "Minion.ReadChunk", Call: "file.fetch", Message: fmt.Sprintf("%s (offset %d, %d bytes)", p.Path, p.Offset, len(out.Data))}, err)
	if err != nil {
		return rpc.NewError(err, nil)
	}
	*reply = out
	return nil
}
