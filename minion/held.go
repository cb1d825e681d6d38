package minion

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// Synchronous calls that outlive their wait.
//
// A Minion.Call with an origin_job_id runs its method in the daemon, as
// every call does (no runner process), but not on the request's context.
// If the method has not returned when the caller's wait (wait_ms) ends,
// or the caller goes away first, the call becomes the async job of its
// origin: it is recorded in minion.db and spooled like a job a runner
// runs, the daemon itself holding the job's runner lock, and its output
// goes on in the spool. The caller (or a driver after it) finds the job
// with Minion.Adopt, which never starts one, so nothing runs
// twice. A call that finishes after its caller went away is recorded as
// a finished job, so its result is kept for the driver that adopts it.
//
// A held job lives in the daemon: when the daemon stops, it is given
// until the end of the shutdown's grace period, then cancelled; after a
// crash its lock is free and it settles as lost, like a dead runner's.

// maxHeldOutput is how much output a call keeps in memory for its spool
// before it is detached (afterwards it goes to the spool as it comes).
// The whole output is in the result either way.
const maxHeldOutput = 256 << 10

// heldCall is a call with an origin that has not been detached yet.
type heldCall struct {
	detach     chan struct{} // closed to detach the call now
	detachOnce sync.Once
	cancel     context.CancelCauseFunc
	registered chan struct{} // closed when job and err are final
	job        Job           // the job carrying the call on, if any
	err        error

	// The process group the method started last (command.Exec), kept
	// with the job so that a daemon started after a crash of this one
	// can kill what the call left running (see settle and ownsGroup).
	pmu   sync.Mutex
	pid   int
	ticks uint64
	jobID string // set once the call is a job: later starts update it
}

// started notes the process group a held call's method started.
func (a *asyncJobs) started(h *heldCall, pid int) {
	ticks, _ := procStartTicks(pid)
	h.pmu.Lock()
	defer h.pmu.Unlock()
	h.pid, h.ticks = pid, ticks
	if h.jobID == "" {
		return
	}
	if _, err := a.store.update(h.jobID, func(j *Job) bool {
		if j.State == status.Finished {
			return false
		}
		j.PID, j.StartTicks, j.BootID = pid, ticks, a.bootID
		return true
	}); err != nil {
		a.logger.Warn("could not record a held call's process group", "job", h.jobID, "pid", pid, "err", err)
	}
}

func (h *heldCall) askDetach() { h.detachOnce.Do(func() { close(h.detach) }) }

// callDone is how a held method returned.
type callDone struct {
	res  any
	err  error
	took time.Duration
}

// errDaemonStopping is the cause of a held job cancelled by a shutdown.
var errDaemonStopping = errors.New("the minion stopped while this call ran in it")

// callHeld runs a method for a Minion.Call with an origin (see above).
// It returns the method's result and error, or the job that carries the
// call on.
func (a *asyncJobs) callHeld(reqCtx context.Context, caller string, p *rpc.CallParams, timeout time.Duration,
	run func(ctx context.Context) (any, error)) (any, *Job, error) {
	if len(p.OriginJobID) > MaxOriginJobID {
		return nil, nil, status.Errorf(status.KindBadArgs, "origin_job_id is at most %d bytes", MaxOriginJobID)
	}
	wait := timeout
	if p.JobTimeoutMS < 0 {
		return nil, nil, status.Errorf(status.KindBadArgs, "job_timeout_ms must not be negative")
	}
	if p.JobTimeoutMS > 0 {
		timeout = min(time.Duration(p.JobTimeoutMS)*time.Millisecond, MaxJobTimeout)
	}
	key := string(originKey(caller, p.OriginJobID))
	ctx, cancel := context.WithCancelCause(context.Background())
	ctx, cancelT := context.WithTimeout(ctx, timeout)
	h := &heldCall{detach: make(chan struct{}), registered: make(chan struct{}), cancel: cancel}
	a.heldMu.Lock()
	if a.calls[key] != nil {
		a.heldMu.Unlock()
		cancelT()
		return nil, nil, status.Errorf(status.KindBadArgs, "a call of job %s is already running on this minion", p.OriginJobID)
	}
	if a.heldStopping {
		a.heldMu.Unlock()
		cancelT()
		return nil, nil, status.Errorf(status.KindInternal, "this minion is stopping; try again when it is back")
	}
	a.calls[key] = h
	a.heldWG.Add(2) // the method, and the completion below
	a.heldMu.Unlock()
	// An origin that already has a job here (a call kept before, or a
	// submit) is not run again: nothing runs twice, whatever a client
	// sends. Looked up once the call is in a.calls, where it keeps out
	// any other call of the origin; one kept before has its job recorded
	// before it left a.calls. A store that cannot say is no reason to
	// refuse a call.
	if job, ok, err := a.store.byOrigin(caller, p.OriginJobID); ok {
		// Known, even if its record does not decode: not run again.
		a.forgetCall(key, h, job, nil)
		a.heldWG.Add(-2)
		cancelT()
		which := "a job"
		if job.ID != "" {
			which = "job " + job.ID
		}
		return nil, nil, status.Errorf(status.KindBadArgs, "this minion already has %s of origin %s: the call is not run again (Minion.Adopt finds the job)", which, p.OriginJobID)
	} else if err != nil {
		a.logger.Warn("could not look up a call's origin in minion.db; running it", "origin", p.OriginJobID, "err", err)
	}

	out := &heldOutput{}
	done := make(chan callDone, 1)
	start := time.Now()
	go func() {
		defer a.heldWG.Done()
		res, err := run(modules.WithProcessStarted(modules.WithOutput(ctx, out), func(pid int) { a.started(h, pid) }))
		done <- callDone{res, err, time.Since(start)}
	}()

	waitT := time.NewTimer(wait)
	defer waitT.Stop()
	var d callDone
	finished := false
	select {
	case d = <-done:
		finished = true
	case <-waitT.C:
	case <-reqCtx.Done():
	case <-h.detach:
	}
	if finished && reqCtx.Err() == nil && !isClosed(h.detach) {
		// The common case: answered within the wait, to a caller still
		// there. Nothing is recorded.
		a.forgetCall(key, h, Job{}, nil)
		a.heldWG.Done()
		cancelT()
		return d.res, nil, d.err
	}
	h.pmu.Lock() // a process started meanwhile is recorded with the job
	job, sp, err := a.registerHeld(caller, p, timeout, start, h.pid, h.ticks)
	if err == nil {
		h.jobID = job.ID
	}
	h.pmu.Unlock()
	if err != nil {
		a.logger.Error("could not keep a call that outlived its wait: cancelling it", "origin", p.OriginJobID, "err", err)
		cancel(err)
		// Not busy (rpc.ErrBusy) for an adopter: trying again would not
		// find the call, which is stopped.
		a.forgetCall(key, h, Job{}, status.Errorf(status.KindInternal, "the call outlived its wait and could not be kept as a job: %v", err))
		go func() {
			defer a.heldWG.Done()
			defer cancelT()
			if !finished {
				<-done
			}
		}()
		return nil, nil, status.Errorf(status.KindInternal, "the call outlived its wait and could not be kept as a job: %v", err)
	}
	out.attach(sp.output)
	if heldRecorded != nil {
		heldRecorded(job)
	}
	a.heldMu.Lock()
	a.held[job.ID] = h
	a.heldMu.Unlock()
	// A cancel that came between the job's record and its entry in
	// a.held (its ID is in Minion.List from the record on) found nothing
	// to cancel: it is applied here.
	if j, err := a.store.get(job.ID); err == nil && j.Cancelled {
		h.cancel(errCancelled)
	}
	a.forgetCall(key, h, job, nil)
	go func() {
		defer a.heldWG.Done()
		defer cancelT()
		if !finished {
			d = <-done
		}
		cause := context.Cause(ctx)
		a.completeHeld(job, sp, callOutcome(d.res, d.err, ctx, errors.Is(cause, errCancelled) || errors.Is(cause, errDaemonStopping), d.took), cause)
		a.heldMu.Lock()
		delete(a.held, job.ID)
		a.heldMu.Unlock()
	}()
	a.logger.Debug("call detached", "origin", p.OriginJobID, "job", job.ID, "finished", finished)
	return nil, &job, nil
}

// heldRecorded, if set (tests), is called when a call has been recorded
// as a job, before cancels can find it in a.held.
var heldRecorded func(Job)

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// forgetCall ends h's time in the table of calls not yet detached: it
// has its job (or none, or err), which adopters waiting on it get.
func (a *asyncJobs) forgetCall(key string, h *heldCall, job Job, err error) {
	a.heldMu.Lock()
	if a.calls[key] == h {
		delete(a.calls, key)
	}
	a.heldMu.Unlock()
	h.job, h.err = job, err
	close(h.registered)
}

// heldSpool is what a held job writes to in its spool.
type heldSpool struct {
	dir    string
	lock   *os.File // the job's runner lock, held by the daemon
	file   *os.File
	output *spoolWriter
}

// registerHeld records a call as the job of its origin and spools it.
func (a *asyncJobs) registerHeld(caller string, p *rpc.CallParams, timeout time.Duration, start time.Time, pid int, ticks uint64) (Job, heldSpool, error) {
	args := p.Args
	if m, err := a.reg.Lookup(p.Module, p.Method); err == nil {
		if bound, err := m.Bind(p.Args, p.Positional); err == nil {
			args = bound
		}
	}
	// A held job is an async job running in the daemon: it counts, and
	// is refused, as a submitted one (the running-jobs limits), or calls
	// with a short wait would pile up jobs without bound.
	job, created, err := a.store.submit(caller, p.OriginJobID, a.limits(caller), func(id string) Job {
		return Job{
			ID: id, OriginJobID: p.OriginJobID, Caller: caller, Module: p.Module, Method: p.Method,
			Args: args, TimeoutMS: timeout.Milliseconds(), State: status.Running, CreatedAt: start.UTC(), InProcess: true,
			PID: pid, StartTicks: ticks, BootID: a.bootID,
		}
	})
	if err != nil {
		return Job{}, heldSpool{}, err
	}
	if !created {
		return Job{}, heldSpool{}, status.Errorf(status.KindInternal, "job %s of origin %s already exists", job.ID, p.OriginJobID)
	}
	sp, err := a.spoolHeld(job)
	if err != nil {
		if _, ferr := a.finish(job.ID, outcome{Error: status.Errorf(status.KindInternal, "could not spool the call: %v", err), FinishedAt: time.Now().UTC()}); ferr != nil {
			err = errors.Join(err, ferr)
		}
		return Job{}, heldSpool{}, err
	}
	return job, sp, nil
}

func (a *asyncJobs) spoolHeld(job Job) (heldSpool, error) {
	sp := heldSpool{dir: a.dir(job.ID)}
	if err := os.MkdirAll(sp.dir, 0o700); err != nil {
		return sp, err
	}
	data, err := json.Marshal(spec{
		JobID: job.ID, OriginJobID: job.OriginJobID, Caller: job.Caller, Module: job.Module, Method: job.Method,
		Args: job.Args, TimeoutMS: job.TimeoutMS, CreatedAt: job.CreatedAt,
	})
	if err != nil {
		return sp, err
	}
	if err := writeFileAtomic(filepath.Join(sp.dir, specFile), data); err != nil {
		return sp, err
	}
	if err := createReserve(sp.dir); err != nil {
		return sp, err
	}
	if sp.file, err = os.OpenFile(filepath.Join(sp.dir, outputFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err != nil {
		return sp, err
	}
	if sp.lock, err = createRunnerLock(sp.dir); err != nil {
		sp.file.Close()
		return sp, err
	}
	sp.output = &spoolWriter{w: sp.file, room: MaxSpoolOutput}
	return sp, nil
}

// completeHeld leaves a held job's outcome in its spool, lets its lock go
// and records it.
func (a *asyncJobs) completeHeld(job Job, sp heldSpool, o outcome, cause error) {
	if errors.Is(cause, errDaemonStopping) {
		o.OK, o.Error = false, status.Errorf(status.KindLost, "%v", errDaemonStopping)
	}
	if err := sp.output.Err(); err != nil && o.Error == nil {
		o.OK, o.Error = false, status.Errorf(status.KindInternal, "the call's output could not be kept in the spool: %v", err)
	}
	sp.file.Close()
	if raw, err := json.Marshal(o); err != nil {
		a.logger.Error("encode a held call's outcome", "job", job.ID, "err", err)
	} else if err := saveResult(sp.dir, raw); err != nil {
		a.logger.Error("write a held call's result to its spool", "job", job.ID, "err", err)
	}
	sp.lock.Close()
	if _, _, err := a.ingest(job); err != nil {
		a.logger.Error("record a held call's result", "job", job.ID, "err", err)
	}
}

// errCancelled is the cause of a held job cancelled by Minion.Cancel.
var errCancelled = errors.New("job cancelled")

// cancelHeld cancels a held job (its method's context); it reports false
// if id is not one.
func (a *asyncJobs) cancelHeld(id string) bool {
	a.heldMu.Lock()
	h := a.held[id]
	a.heldMu.Unlock()
	if h == nil {
		return false
	}
	h.cancel(errCancelled)
	return true
}

// adopt returns the job a Minion.Call of this origin left, detaching the
// call first if it still waits on its caller. It never starts a job.
func (a *asyncJobs) adopt(caller, origin string) (Job, error) {
	a.heldMu.Lock()
	h := a.calls[string(originKey(caller, origin))]
	a.heldMu.Unlock()
	if h != nil {
		h.askDetach()
		<-h.registered
		if h.err != nil {
			return Job{}, h.err
		}
		if h.job.ID != "" {
			return h.job, nil
		}
	}
	job, ok, err := a.store.byOrigin(caller, origin)
	if err != nil {
		return Job{}, err
	}
	if !ok {
		return Job{}, status.Errorf(status.KindLost, "this minion has no call of job %s: it never arrived, or it ended and its answer was lost", origin)
	}
	return job, nil
}

// stopHeld detaches the calls still waiting on their callers (a shutdown
// should not wait for them), gives held jobs until ctx is done to finish,
// then cancels them and waits for their outcomes to be written.
func (a *asyncJobs) stopHeld(ctx context.Context) {
	a.heldMu.Lock()
	a.heldStopping = true
	for _, h := range a.calls {
		h.askDetach()
	}
	a.heldMu.Unlock()
	idle := make(chan struct{})
	go func() {
		a.heldWG.Wait()
		close(idle)
	}()
	select {
	case <-idle:
		return
	case <-ctx.Done():
	}
	a.heldMu.Lock()
	for _, h := range a.held {
		h.cancel(errDaemonStopping)
	}
	for _, h := range a.calls {
		h.cancel(errDaemonStopping)
	}
	a.heldMu.Unlock()
	t := time.NewTimer(cancelGrace)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
		a.logger.Warn("calls still running at shutdown after their cancel; their jobs will settle as lost")
	}
}

// heldOutput keeps a call's output in memory until it is detached, then
// writes it to the job's spool as it comes.
type heldOutput struct {
	mu    sync.Mutex
	buf   []byte
	cut   bool
	spool *spoolWriter
}

func (o *heldOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.spool != nil {
		return o.spool.Write(p)
	}
	if room := maxHeldOutput - len(o.buf); len(p) > room {
		o.buf, o.cut = append(o.buf, p[:room]...), true
	} else {
		o.buf = append(o.buf, p...)
	}
	return len(p), nil
}

func (o *heldOutput) attach(w *spoolWriter) {
	o.mu.Lock()
	defer o.mu.Unlock()
	w.Write(o.buf)
	if o.cut {
		w.Write([]byte("\n[overlord: output cut here until the call was detached; the result has all of it]\n"))
	}
	o.buf, o.spool = nil, w
}

// runsHere reports whether held job j is being run by this daemon: being
// recorded (still among the calls), or recorded.
func (a *asyncJobs) runsHere(j Job) bool {
	a.heldMu.Lock()
	defer a.heldMu.Unlock()
	return a.held[j.ID] != nil || a.calls[string(originKey(j.Caller, j.OriginJobID))] != nil
}
