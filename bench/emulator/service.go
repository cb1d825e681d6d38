package main

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/internal/buildinfo"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/command"
	"github.com/overlordhq/overlord/modules/test"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// Limits the real minion applies too.
const (
	defaultCallTimeout = 60 * time.Second
	maxCallTimeout     = 24 * time.Hour
	maxStatusWait      = 30 * time.Second
)

// minionService is the JSON-RPC service "Minion" of every emulated minion
// at once: the minion's name is the TLS server name of the request. It
// runs the test module for real and a stand-in for command.run, keeps
// async jobs in memory, and holds one revocation list for the fleet.
type minionService struct {
	reg   *modules.Registry
	ca    *x509.Certificate
	list  atomic.Pointer[certs.CRL]
	async *asyncJobs
}

func newMinionService(ca *x509.Certificate) *minionService {
	reg := modules.NewRegistry()
	for _, m := range []modules.Module{test.Module{}, commandStandIn{}} {
		if err := reg.Add(m); err != nil {
			panic(err) // fixed, distinct names
		}
	}
	return &minionService{reg: reg, ca: ca, async: newAsyncJobs(reg)}
}

func (s *minionService) crl() *certs.CRL { return s.list.Load() }

func (s *minionService) close() { s.async.close() }

// handler is the rpc package's server for the service, with the CRL
// number header every minion answer carries.
func (s *minionService) handler() (http.Handler, error) {
	h, err := rpc.NewServer(map[string]any{"Minion": s})
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(rpc.CRLHeader, strconv.FormatInt(s.crl().NumberOf(), 10))
		h.ServeHTTP(w, r)
	}), nil
}

// nameKey carries the minion's name in a method's context.
type nameKey struct{}

func minionName(r *http.Request) string {
	if r.TLS == nil {
		return ""
	}
	return r.TLS.ServerName
}

func caller(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	// Through a gateway, the call is made on behalf of the identity
	// whose certificate the header carries; the emulator takes the
	// gateway's word for it (a minion checks it against the CA and its
	// revocation list).
	if v := r.Header.Get(rpc.OnBehalfOfHeader); v != "" && certs.RoleOf(r.TLS.PeerCertificates[0]) == certs.RoleGateway {
		if der, err := base64.StdEncoding.DecodeString(v); err == nil {
			if c, err := x509.ParseCertificate(der); err == nil {
				return c.Subject.CommonName
			}
		}
	}
	return r.TLS.PeerCertificates[0].Subject.CommonName
}

func callTimeout(ms int64) (time.Duration, error) {
	switch {
	case ms < 0:
		return 0, status.Errorf(status.KindBadArgs, "timeout_ms must not be negative")
	case ms == 0:
		return defaultCallTimeout, nil
	}
	return min(time.Duration(ms)*time.Millisecond, maxCallTimeout), nil
}

// Call runs a method and answers with its result. Calls are not held
// past their wait (OriginJobID is ignored, as by a minion that predates
// it): one past TimeoutMS fails with kind timeout.
func (s *minionService) Call(r *http.Request, p *rpc.CallParams, reply *rpc.CallReply) error {
	timeout, err := callTimeout(p.TimeoutMS)
	if err != nil {
		return rpc.NewError(err, nil)
	}
	if err := modules.CheckCall(p.Module, p.Method); err != nil {
		return rpc.NewError(err, nil)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), nameKey{}, minionName(r)), timeout)
	res, err := s.reg.Call(ctx, p.Module, p.Method, p.Args, p.Positional)
	cancel()
	reply.DurationMS = time.Since(start).Milliseconds()
	if err != nil {
		return rpc.NewError(err, res)
	}
	raw, err := rpc.EncodeResult(res)
	if err != nil {
		return rpc.NewError(err, nil)
	}
	reply.Result = raw
	return nil
}

// Describe returns the emulated modules.
func (s *minionService) Describe(r *http.Request, _ *rpc.DescribeParams, reply *rpc.DescribeReply) error {
	reply.Name = minionName(r)
	reply.Version = buildinfo.Version() + "-emulated"
	reply.Modules = s.reg.DescribeAll()
	return nil
}

// UpdateCRL takes the overlord's revocation list, for the whole fleet.
func (s *minionService) UpdateCRL(_ *http.Request, p *rpc.UpdateCRLParams, reply *rpc.UpdateCRLReply) error {
	c, err := certs.ParseCRL(p.CRL, s.ca)
	if err != nil {
		return rpc.NewError(status.Errorf(status.KindBadArgs, "%v", err), nil)
	}
	for {
		old := s.list.Load()
		if old.NumberOf() >= c.Number {
			reply.Number, reply.Revoked = old.NumberOf(), old.Len()
			return nil
		}
		if s.list.CompareAndSwap(old, c) {
			reply.Number, reply.Updated, reply.Revoked = c.Number, true, c.Len()
			return nil
		}
	}
}

// Submit starts an async job in memory, or returns the one the same
// caller and origin job ID started.
func (s *minionService) Submit(r *http.Request, p *rpc.SubmitParams, reply *rpc.SubmitReply) error {
	if p.OriginJobID == "" {
		return rpc.NewError(status.Errorf(status.KindBadArgs, "origin_job_id is required"), nil)
	}
	timeout, err := callTimeout(p.TimeoutMS)
	if err != nil {
		return rpc.NewError(err, nil)
	}
	if err := modules.CheckCall(p.Module, p.Method); err != nil {
		return rpc.NewError(err, nil)
	}
	id, created, err := s.async.submit(minionName(r), caller(r), p, timeout)
	if err != nil {
		return rpc.NewError(err, nil)
	}
	reply.JobID, reply.Created = id, created
	return nil
}

// Adopt returns the job of an origin; calls are never held, so only a
// submitted one is found.
func (s *minionService) Adopt(r *http.Request, p *rpc.AdoptParams, reply *rpc.SubmitReply) error {
	j := s.async.byOrigin(minionName(r), caller(r), p.OriginJobID)
	if j == nil {
		return rpc.NewError(status.Errorf(status.KindLost, "no job of origin %s: the call was never kept", p.OriginJobID), nil)
	}
	reply.JobID = j.id
	return nil
}

// Status reports jobs, waiting up to WaitMS for one of them to finish.
func (s *minionService) Status(r *http.Request, p *rpc.StatusParams, reply *rpc.StatusReply) error {
	wait := min(time.Duration(p.WaitMS)*time.Millisecond, maxStatusWait)
	reply.Jobs = s.async.status(r.Context(), minionName(r), caller(r), p.JobIDs, wait)
	return nil
}

// Cancel cancels a job.
func (s *minionService) Cancel(r *http.Request, p *rpc.CancelParams, reply *rpc.CancelReply) error {
	st, ok := s.async.cancel(minionName(r), caller(r), p.JobID, p.Reason)
	if !ok {
		return rpc.NewError(status.Errorf(status.KindLost, "no job %s", p.JobID), nil)
	}
	reply.JobStatus = st
	return nil
}

// List returns the caller's jobs on this minion, newest first.
func (s *minionService) List(r *http.Request, p *rpc.ListParams, reply *rpc.ListReply) error {
	reply.Jobs = s.async.list(minionName(r), caller(r), p.Limit)
	return nil
}

// commandStandIn is command.run's declaration (so the overlord's own
// binding and checks apply) with no process behind it: a canned result
// shaped like command.run's.
type commandStandIn struct{ command.Module }

// Methods implements modules.Module: run only.
func (c commandStandIn) Methods() []*modules.Method {
	for _, m := range c.Module.Methods() {
		if m.Name == "run" {
			standIn := *m
			standIn.Run = runStandIn
			return []*modules.Method{&standIn}
		}
	}
	panic("command.run is not declared")
}

func runStandIn(ctx context.Context, _ modules.Args) (any, error) {
	name, _ := ctx.Value(nameKey{}).(string)
	return command.Result{Stdout: name + "\n", ExitCode: 0}, nil
}

// asyncJobs are the fleet's async jobs, in memory only.
type asyncJobs struct {
	reg     *modules.Registry
	ctx     context.Context
	stop    context.CancelFunc
	mu      sync.Mutex
	byID    map[string]*asyncJob
	origins map[string]*asyncJob // minion, caller, origin -> job
	changed chan struct{}        // closed and replaced when a job finishes
}

type asyncJob struct {
	id, minion, caller, origin string
	module, method             string
	created                    time.Time
	cancel                     context.CancelCauseFunc
	// set once, under asyncJobs.mu
	finished *time.Time
	result   any
	err      error
}

func newAsyncJobs(reg *modules.Registry) *asyncJobs {
	ctx, stop := context.WithCancel(context.Background())
	return &asyncJobs{reg: reg, ctx: ctx, stop: stop, byID: map[string]*asyncJob{}, origins: map[string]*asyncJob{}, changed: make(chan struct{})}
}

func (a *asyncJobs) close() { a.stop() }

func originKey(minion, caller, origin string) string {
	return certs.NameKey(minion) + "\x00" + caller + "\x00" + origin
}

func (a *asyncJobs) submit(minion, caller string, p *rpc.SubmitParams, timeout time.Duration) (string, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := originKey(minion, caller, p.OriginJobID)
	if j, ok := a.origins[key]; ok {
		return j.id, false, nil
	}
	id, err := jobs.NewID()
	if err != nil {
		return "", false, err
	}
	ctx, cancel := context.WithCancelCause(context.WithValue(a.ctx, nameKey{}, minion))
	j := &asyncJob{id: id, minion: minion, caller: caller, origin: p.OriginJobID, module: p.Module, method: p.Method,
		created: time.Now().UTC(), cancel: cancel}
	a.byID[id], a.origins[key] = j, j
	go func() {
		tctx, stop := context.WithTimeout(ctx, timeout)
		res, err := a.reg.Call(tctx, p.Module, p.Method, p.Args, p.Positional)
		stop()
		if cause := context.Cause(ctx); cause != nil && err != nil {
			err = cause
		}
		now := time.Now().UTC()
		a.mu.Lock()
		j.finished, j.result, j.err = &now, res, err
		close(a.changed)
		a.changed = make(chan struct{})
		a.mu.Unlock()
		cancel(nil)
	}()
	return id, true, nil
}

func (a *asyncJobs) byOrigin(minion, caller, origin string) *asyncJob {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.origins[originKey(minion, caller, origin)]
}

// lookup returns job id if it is the caller's on minion.
func (a *asyncJobs) lookup(minion, caller, id string) *asyncJob {
	j := a.byID[id]
	if j == nil || !certs.SameName(j.minion, minion) || j.caller != caller {
		return nil
	}
	return j
}

// statusOf is j's status; a.mu held.
func statusOf(j *asyncJob) rpc.JobStatus {
	st := rpc.JobStatus{JobID: j.id, OriginJobID: j.origin, Module: j.module, Method: j.method, State: status.Running, CreatedAt: j.created}
	if j.finished == nil {
		return st
	}
	st.State, st.FinishedAt = status.Finished, j.finished
	st.DurationMS = j.finished.Sub(j.created).Milliseconds()
	if j.err != nil {
		var se *status.Error
		if !errors.As(j.err, &se) {
			se = status.Errorf(status.KindOf(j.err), "%v", j.err)
		}
		st.Error = se
	} else {
		st.OK = true
	}
	if j.result != nil {
		if raw, err := rpc.EncodeResult(j.result); err == nil {
			st.Result = raw
		}
	}
	return st
}

func (a *asyncJobs) status(ctx context.Context, minion, caller string, ids []string, wait time.Duration) []rpc.JobStatus {
	deadline := time.Now().Add(wait)
	for {
		a.mu.Lock()
		out := make([]rpc.JobStatus, len(ids))
		anyDone := false
		for i, id := range ids {
			j := a.lookup(minion, caller, id)
			if j == nil {
				out[i] = rpc.JobStatus{JobID: id, State: status.Finished, Error: status.Errorf(status.KindLost, "no job %s", id)}
				anyDone = true
				continue
			}
			out[i] = statusOf(j)
			anyDone = anyDone || j.finished != nil
		}
		changed := a.changed
		a.mu.Unlock()
		left := time.Until(deadline)
		if anyDone || left <= 0 {
			return out
		}
		t := time.NewTimer(left)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		if ctx.Err() != nil {
			return out
		}
	}
}

func (a *asyncJobs) cancel(minion, caller, id string, reason status.Kind) (rpc.JobStatus, bool) {
	a.mu.Lock()
	j := a.lookup(minion, caller, id)
	a.mu.Unlock()
	if j == nil {
		return rpc.JobStatus{}, false
	}
	if reason == "" {
		reason = status.KindCancelled
	}
	msg := "cancelled"
	if reason == status.KindTimeout {
		msg = "cancelled: past its deadline"
	}
	j.cancel(status.Errorf(reason, "%s", msg))
	a.mu.Lock()
	defer a.mu.Unlock()
	return statusOf(j), true
}

func (a *asyncJobs) list(minion, caller string, limit int) []rpc.JobStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []rpc.JobStatus
	for _, j := range a.byID {
		if certs.SameName(j.minion, minion) && j.caller == caller {
			out = append(out, statusOf(j))
		}
	}
	// Newest first: job IDs are UUIDv7, ordered by time.
	slices.SortFunc(out, func(a, b rpc.JobStatus) int { return strings.Compare(b.JobID, a.JobID) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}
