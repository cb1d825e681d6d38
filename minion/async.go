package minion

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// Async job defaults.
const (
	DefaultJobTimeout   = time.Hour
	MaxJobTimeout       = 7 * 24 * time.Hour
	DefaultJobRetention = 7 * 24 * time.Hour
	DefaultJobKeep      = 1000
	cancelGrace         = 5 * time.Second
	sweepInterval       = 500 * time.Millisecond
	purgeInterval       = 10 * time.Minute
	// spawnGrace is how long a job may go without a recorded runner pid
	// before the sweeper calls it lost (the daemon records the pid right
	// after starting the runner).
	spawnGrace = 30 * time.Second
	// timeoutSlack is how long past its time limit a runner may go on
	// before the sweeper cancels it (a runner stops its job at the limit
	// itself, unless it is stopped or hung).
	timeoutSlack = 30 * time.Second
)

// Limits on the async jobs running at once: past them, Minion.Submit
// fails with kind internal, saying the minion is busy.
const (
	MaxRunningJobs            = 256
	MaxRunningJobsPerIdentity = 64
)

// MaxOriginJobID bounds the origin_job_id of Minion.Submit.
const MaxOriginJobID = 256

// Limits of Minion.Status and Minion.List.
const (
	// DefaultStatusChunk is the output returned per job when max_output is
	// 0 or absent.
	DefaultStatusChunk = 64 << 10
	// MaxStatusChunk is the most output returned per job: a larger
	// max_output is cut to it.
	MaxStatusChunk = 1 << 20
	// MaxStatusOutput is the most output one reply carries, all its jobs
	// together. The jobs past it get less or none, and Truncated.
	MaxStatusOutput = 8 << 20
	// MaxStatusReply bounds the JSON of one reply's jobs, results and
	// output included: past it, jobs come without their result and
	// output, and Truncated. The first job always has its result.
	MaxStatusReply = rpc.MaxJobsBytes
	// MaxStatusJobs is the most job IDs one Minion.Status may ask for;
	// MaxWaitJobs the most with a long poll.
	MaxStatusJobs = 1000
	MaxWaitJobs   = 100
)

// asyncJobs runs and tracks async jobs: minion.db, the spool, the
// runners, and a sweeper that ingests results, notices dead runners and
// applies retention.
type asyncJobs struct {
	store     *jobStore
	spool     string
	runner    []string
	reg       *modules.Registry
	logger    *slog.Logger
	retention time.Duration
	keep      int
	bootID    string // this boot's, to tell a runner of this boot from a reused pid
	maxReply  int    // MaxStatusReply if 0 (tests make it smaller)
	// The defaults of these are MaxRunningJobs, MaxRunningJobsPerIdentity
	// and timeoutSlack; tests make them smaller.
	maxRunning, maxPerCaller int
	slack                    time.Duration

	mu       sync.Mutex
	children map[int]bool // runners started by this daemon, to reap
	ingestMu sync.Mutex   // one result ingested at a time (see ingest)

	// Calls that outlive their wait (held.go): those not yet detached,
	// by origin key, and the held jobs, by job ID.
	heldMu       sync.Mutex
	calls        map[string]*heldCall
	held         map[string]*heldCall
	heldStopping bool
	heldWG       sync.WaitGroup

	stop     chan struct{}
	done     chan struct{}
	draining chan struct{} // closed when the daemon stops: long polls answer at once
	drainOne sync.Once
}

func openAsync(stateDir string, runner []string, reg *modules.Registry, retention time.Duration, keep int, logger *slog.Logger) (*asyncJobs, error) {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, err
	}
	spool := filepath.Join(abs, "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return nil, err
	}
	store, err := openJobStore(filepath.Join(stateDir, "minion.db"), spool, logger)
	if err != nil {
		return nil, err
	}
	a := &asyncJobs{
		store: store, spool: spool, runner: runner, reg: reg, logger: logger,
		retention: retention, keep: keep, bootID: bootID(),
		maxRunning: MaxRunningJobs, maxPerCaller: MaxRunningJobsPerIdentity, slack: timeoutSlack,
		children: map[int]bool{}, calls: map[string]*heldCall{}, held: map[string]*heldCall{}, stop: make(chan struct{}), done: make(chan struct{}), draining: make(chan struct{}),
	}
	if err := a.recover(); err != nil {
		store.Close()
		return nil, err
	}
	go a.sweeper()
	return a, nil
}

// drain makes long polls answer at once, so that a shutdown need not wait
// for them.
func (a *asyncJobs) drain() { a.drainOne.Do(func() { close(a.draining) }) }

// Close stops the sweeper and closes minion.db. Runners go on; the next
// daemon adopts them.
func (a *asyncJobs) Close() error {
	select {
	case <-a.stop:
		return nil
	default:
	}
	close(a.stop)
	<-a.done
	return a.store.Close()
}

func (a *asyncJobs) dir(id string) string { return filepath.Join(a.spool, id) }

// recover settles every job left RUNNING by an earlier daemon: a result
// is ingested, a live runner adopted, anything else is lost.
func (a *asyncJobs) recover() error {
	running, err := a.store.running()
	if err != nil {
		return err
	}
	var ingested, adopted, lost int
	for _, j := range running {
		j, err := a.settle(j, true)
		if err != nil {
			return err
		}
		switch {
		case j.State != status.Finished:
			adopted++
		case j.Error != nil && j.Error.Kind == status.KindLost:
			lost++
		default:
			ingested++
		}
	}
	if len(running) > 0 {
		a.logger.Info("settled jobs left running", "ingested", ingested, "adopted", adopted, "lost", lost)
	}
	return nil
}

func (a *asyncJobs) sweeper() {
	defer close(a.done)
	tick := time.NewTicker(sweepInterval)
	defer tick.Stop()
	lastPurge := time.Time{}
	for {
		select {
		case <-a.stop:
			return
		case <-tick.C:
		}
		a.reap()
		running, err := a.store.running()
		if err != nil {
			a.logger.Error("sweep", "err", err)
			continue
		}
		for _, j := range running {
			settled, err := a.settle(j, false)
			if err != nil {
				a.logger.Error("settle job", "job", j.ID, "err", err)
				continue
			}
			a.enforceTimeout(settled)
		}
		if time.Since(lastPurge) >= purgeInterval {
			lastPurge = time.Now()
			if err := a.purge(time.Now().Add(-a.retention), a.keep); err != nil {
				a.logger.Error("purge jobs", "err", err)
			}
		}
	}
}

// limits returns the check of the running-jobs limits for a new job of
// caller.
func (a *asyncJobs) limits(caller string) func(running, callers int) error {
	return func(running, callers int) error {
		switch {
		case running >= a.maxRunning:
			return rpc.Busy(status.Errorf(status.KindInternal, "this minion is busy with %d async jobs (at most %d at once); try again later", running, a.maxRunning))
		case callers >= a.maxPerCaller:
			return rpc.Busy(status.Errorf(status.KindInternal, "this minion is busy with %d async jobs of %s (at most %d per identity); try again later", callers, caller, a.maxPerCaller))
		}
		return nil
	}
}

// enforceTimeout stops a job whose runner has gone on past the job's time
// limit (and the slack): it is cancelled with kind timeout, and if it
// still runs cancelGrace after that (the delayed SIGKILL of the cancel is
// lost when the daemon restarts), its group is killed.
func (a *asyncJobs) enforceTimeout(j Job) {
	if j.State == status.Finished || j.TimeoutMS <= 0 {
		return
	}
	over := time.Since(j.CreatedAt) - time.Duration(j.TimeoutMS)*time.Millisecond - a.slack
	switch {
	case over <= 0:
	case !j.Cancelled:
		a.logger.Warn("job past its time limit: cancelling it", "job", j.ID, "timeout_ms", j.TimeoutMS)
		if _, err := a.cancel(j.ID, status.KindTimeout, ""); err != nil {
			a.logger.Error("cancel job past its time limit", "job", j.ID, "err", err)
		}
	case over > 2*cancelGrace && a.ownsGroup(j):
		_ = syscall.Kill(-j.PID, syscall.SIGKILL)
	}
}

// reap collects the exit status of runners this daemon started.
func (a *asyncJobs) reap() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for pid := range a.children {
		var ws syscall.WaitStatus
		if got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); got == pid || err != nil {
			delete(a.children, pid)
		}
	}
}

func (a *asyncJobs) purge(cutoff time.Time, keep int) error {
	gone, err := a.store.purge(cutoff, keep)
	for _, id := range gone {
		if rmErr := os.RemoveAll(a.dir(id)); rmErr != nil {
			err = errors.Join(err, rmErr)
		}
	}
	if len(gone) > 0 {
		a.logger.Info("purged finished jobs", "count", len(gone))
	}
	return err
}

// submit validates and records a job, then starts its runner. The same
// caller and origin job ID always get the same job.
func (a *asyncJobs) submit(caller string, p *rpc.SubmitParams) (Job, bool, error) {
	if p.OriginJobID == "" || len(p.OriginJobID) > MaxOriginJobID {
		return Job{}, false, status.Errorf(status.KindBadArgs, "origin_job_id is required, at most %d bytes", MaxOriginJobID)
	}
	a.heldMu.Lock()
	calling := a.calls[string(originKey(caller, p.OriginJobID))] != nil
	a.heldMu.Unlock()
	if calling {
		// A call of this origin is running here: that is the job, and
		// starting another would run it twice.
		job, err := a.adopt(caller, p.OriginJobID)
		return job, false, err
	}
	m, err := a.reg.Lookup(p.Module, p.Method)
	if err != nil {
		return Job{}, false, err
	}
	args, err := m.Bind(p.Args, p.Positional)
	if err != nil {
		return Job{}, false, err
	}
	timeout := DefaultJobTimeout
	if p.TimeoutMS < 0 {
		return Job{}, false, status.Errorf(status.KindBadArgs, "timeout_ms must not be negative")
	}
	if p.TimeoutMS > 0 {
		timeout = min(time.Duration(p.TimeoutMS)*time.Millisecond, MaxJobTimeout)
	}
	job, created, err := a.store.submit(caller, p.OriginJobID, a.limits(caller), func(id string) Job {
		return Job{
			ID: id, OriginJobID: p.OriginJobID, Caller: caller,
			Module: p.Module, Method: p.Method, Args: args, TimeoutMS: timeout.Milliseconds(),
			State: status.Running, CreatedAt: time.Now().UTC(),
		}
	})
	if err != nil || !created {
		return job, false, err
	}
	pid, ticks, err := a.start(job)
	if err != nil {
		a.logger.Error("start runner", "job", job.ID, "err", err)
		job, err = a.finish(job.ID, outcome{Error: status.Errorf(status.KindInternal, "could not start the job's runner: %v", err), FinishedAt: time.Now().UTC()})
		if _, ok := spooledOutcome(a.dir(job.ID)); !ok {
			// No room for even the outcome (a full disk): leave no spool
			// entry that would look RUNNING for ever.
			os.RemoveAll(a.dir(job.ID))
		}
		return job, true, err
	}
	job, err = a.store.update(job.ID, func(j *Job) bool {
		j.PID, j.StartTicks, j.BootID = pid, ticks, a.bootID
		return true
	})
	return job, true, err
}

// start spools the job and starts its runner in a session of its own.
//
// It returns the runner's pid and start time (0 where procfs cannot
// tell it).
func (a *asyncJobs) start(job Job) (int, uint64, error) {
	dir := a.dir(job.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, 0, err
	}
	data, err := json.Marshal(spec{
		JobID: job.ID, OriginJobID: job.OriginJobID, Caller: job.Caller, Module: job.Module, Method: job.Method,
		Args: job.Args, TimeoutMS: job.TimeoutMS, CreatedAt: job.CreatedAt,
	})
	if err != nil {
		return 0, 0, err
	}
	if err := writeFileAtomic(filepath.Join(dir, specFile), data); err != nil {
		return 0, 0, err
	}
	if err := createReserve(dir); err != nil {
		return 0, 0, err
	}
	log, err := os.OpenFile(filepath.Join(dir, logFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, 0, err
	}
	defer log.Close()
	// The runner's lock is held from before it exists: no check of its
	// liveness can see it dead while it starts.
	lock, err := createRunnerLock(dir)
	if err != nil {
		return 0, 0, err
	}
	defer lock.Close()
	cmd := exec.Command(a.runner[0], append(a.runner[1:], dir)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.ExtraFiles = []*os.File{lock} // descriptor runnerLockFD
	cmd.Env = append(os.Environ(), MinionPIDEnv+"="+strconv.Itoa(os.Getpid()), RunnerLockEnv+"="+strconv.Itoa(runnerLockFD))
	// The job runs where a synchronous call would: in the daemon's
	// working directory (the runner finds its spool by absolute path).
	if wd, err := os.Getwd(); err == nil {
		cmd.Dir = wd
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	pid := cmd.Process.Pid
	a.children[pid] = true
	_ = cmd.Process.Release() // reaped by pid in reap
	// The runner cannot be reaped before this returns (reap takes a.mu),
	// so the pid is still its own.
	ticks, _ := procStartTicks(pid)
	return pid, ticks, nil
}

// settle brings a RUNNING job up to date: a result file is ingested; a
// runner that is gone without one makes the job lost (or cancelled, if
// a cancel was asked for).
func (a *asyncJobs) settle(j Job, starting bool) (Job, error) {
	if j.State == status.Finished {
		return j, nil
	}
	dir := a.dir(j.ID)
	if j, ok, err := a.ingest(j); ok {
		return j, err
	}
	if j.InProcess && a.runsHere(j) {
		// A held call of this daemon: running, whatever its spool says
		// yet (its lock is made just after its record).
		return j, nil
	}
	if j.PID == 0 && !starting && time.Since(j.CreatedAt) < spawnGrace {
		return j, nil // its runner is being started
	}
	if a.isRunner(j) {
		return j, nil
	}
	// The runner may have written its result just before exiting.
	if j, ok, err := a.ingest(j); ok {
		return j, err
	}
	o := lostOutcome(dir, j.PID)
	if j.InProcess {
		o.Error = status.Errorf(status.KindLost, "%v", errDaemonStopping)
	}
	if a.ownsGroup(j) {
		// The runner led the job's process group: whatever it started and
		// left behind goes with it.
		_ = syscall.Kill(-j.PID, syscall.SIGKILL)
	}
	if j.Cancelled {
		o.Error = status.Errorf(status.KindCancelled, "job cancelled")
	}
	return a.finish(j.ID, o)
}

// isRunner reports whether j's runner is alive: it holds its lock (see
// lockFile). A job spooled by an older daemon, without a lock file, is
// judged by its pid: it runs j (see runnerAlive) and, when the daemon
// that started it recorded them, has the runner's start time in this
// boot.
func (a *asyncJobs) isRunner(j Job) bool {
	if held, known := runnerLockHeld(a.dir(j.ID)); known {
		return held
	}
	if !runnerAlive(j.PID, a.dir(j.ID)) {
		return false
	}
	if j.StartTicks == 0 {
		return true // recorded by an older daemon, or no procfs: the command line is all there is
	}
	ticks, err := procStartTicks(j.PID)
	return err == nil && ticks == j.StartTicks && j.BootID == a.bootID
}

// ownsGroup reports whether signalling process group j.PID reaches j's
// processes and nobody else's. It does when the boot is the one the
// runner was started in and either the runner (or its zombie) still
// holds the pid, with the start time recorded, or no process holds it:
// the kernel does not give a new process a pid that a process group
// still uses, so the members left in the group are the job's. Without a
// recorded start time and boot (a job of an older daemon), the group is
// never signalled.
func (a *asyncJobs) ownsGroup(j Job) bool {
	if j.PID <= 0 || j.StartTicks == 0 || j.BootID == "" || j.BootID != a.bootID {
		return false
	}
	ticks, err := procStartTicks(j.PID)
	if err != nil {
		return errors.Is(err, fs.ErrNotExist)
	}
	return ticks == j.StartTicks
}

// finish records a job's outcome in minion.db. An outcome the runner did
// not write itself (lost, cancelled, failed to start) is also written to
// the spool, so that the spool always mirrors the store.
func (a *asyncJobs) finish(id string, o outcome) (Job, error) {
	resultPath := filepath.Join(a.dir(id), resultFile)
	if _, err := os.Stat(resultPath); errors.Is(err, os.ErrNotExist) {
		if data, err := json.Marshal(o); err == nil {
			if err := saveResult(a.dir(id), data); err != nil {
				a.logger.Error("write a job's result to its spool", "job", id, "err", err)
			}
		}
	}
	return a.store.update(id, func(j *Job) bool {
		if j.State == status.Finished {
			return false
		}
		if j.Cancelled && !o.OK && (o.Error == nil || o.Error.Kind != status.KindTimeout) {
			// However the job ended (the command may die of the SIGTERM
			// before its runner notices the cancel), it was cancelled, or
			// stopped at its caller's deadline.
			o.Error = status.Errorf(status.KindCancelled, "job cancelled")
			if j.CancelKind == status.KindTimeout {
				o.Error = status.Errorf(status.KindTimeout, "job stopped at its caller's deadline")
			}
		}
		j.State, j.OK, j.Result, j.Error = status.Finished, o.OK, o.Result, o.Error
		j.DurationMS = o.DurationMS
		at := o.FinishedAt
		j.FinishedAt = &at
		return true
	})
}

// status returns the state of the jobs asked for, settling running ones
// first so the answer is fresh.
//
// A job submitted by another identity than caller looks like no job at all
// (kind lost); caller "" sees every job (the minion's own use).
func (a *asyncJobs) status(p *rpc.StatusParams, caller string) ([]rpc.JobStatus, error) {
	max := p.MaxOutput
	switch {
	case max == 0:
		max = DefaultStatusChunk
	case max > MaxStatusChunk:
		max = MaxStatusChunk
	}
	from := max64(p.FromOffset, 0)
	budget := newReplyBudget(a.maxReply)
	out := make([]rpc.JobStatus, 0, len(p.JobIDs))
	for _, id := range p.JobIDs {
		j, err := a.store.get(id)
		if err == nil && caller != "" && !sameIdentity(j.Caller, caller) {
			err = status.Errorf(status.KindLost, "no job %s", id)
		}
		if errors.Is(err, errJobRecord) {
			// One bad record fails its own entry, not the whole reply.
			st := rpc.JobStatus{JobID: id, State: status.Finished, Error: status.Errorf(status.KindInternal, "%v", err)}
			budget.entry(&st)
			out = append(out, st)
			continue
		}
		if err != nil {
			if status.KindOf(err) == status.KindLost {
				st := rpc.JobStatus{JobID: id, State: status.Finished, Error: status.Errorf(status.KindLost, "this minion has no job %s", id)}
				budget.entry(&st)
				out = append(out, st)
				continue
			}
			return nil, err
		}
		if j, err = a.settle(j, false); err != nil {
			return nil, err
		}
		st := a.jobStatus(j)
		budget.entry(&st)
		if max > 0 {
			size := st.NextOffset
			output, next, err := readOutput(a.dir(j.ID), from, budget.chunk(max))
			if err != nil {
				return nil, err
			}
			kept := budget.output(&st, output)
			st.NextOffset = next - int64(len(output)-kept)
			// The reply's limits, not the job's max_output, stopped the
			// read short: the caller is to ask again from NextOffset.
			st.Truncated = st.Truncated || kept < max && st.NextOffset < size
		}
		out = append(out, st)
	}
	return out, nil
}

// Long polls check the jobs this often, and wait at most maxWait.
const (
	waitTick = 100 * time.Millisecond
	maxWait  = 30 * time.Second
)

// waitChange waits until any of the jobs in first changes state, up to
// p.WaitMS or ctx's end, and returns their status then.
func (a *asyncJobs) waitChange(ctx context.Context, p *rpc.StatusParams, caller string, first []rpc.JobStatus) ([]rpc.JobStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, min(time.Duration(p.WaitMS)*time.Millisecond, maxWait))
	defer cancel()
	tick := time.NewTicker(waitTick)
	defer tick.Stop()
	cur := first
	for {
		for i, js := range cur {
			if js.State != first[i].State || js.State == status.Finished {
				return cur, nil
			}
		}
		select {
		case <-ctx.Done():
			return cur, nil
		case <-a.draining:
			return cur, nil
		case <-tick.C:
		}
		var err error
		if cur, err = a.status(p, caller); err != nil {
			return nil, err
		}
	}
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

func (a *asyncJobs) jobStatus(j Job) rpc.JobStatus {
	st := rpc.JobStatus{
		JobID: j.ID, OriginJobID: j.OriginJobID, Module: j.Module, Method: j.Method,
		State: j.State, OK: j.OK, Result: j.Result, Error: j.Error, DurationMS: j.DurationMS,
		CreatedAt: j.CreatedAt, FinishedAt: j.FinishedAt, NextOffset: outputSize(a.dir(j.ID)),
	}
	if st.State != status.Finished && st.NextOffset > 0 {
		st.State = status.Partial
	}
	return st
}

// cancel asks a job to stop: SIGTERM to its runner's process group, then
// SIGKILL after a grace period.
func (a *asyncJobs) cancel(id string, reason status.Kind, caller string) (rpc.JobStatus, error) {
	if reason == "" {
		reason = status.KindCancelled
	}
	// Another caller's job is answered as one that does not exist, in
	// the same words.
	if j, err := a.store.get(id); status.KindOf(err) == status.KindLost || err == nil && caller != "" && !sameIdentity(j.Caller, caller) {
		return rpc.JobStatus{}, status.Errorf(status.KindLost, "this minion has no job %s", id)
	} else if err != nil {
		return rpc.JobStatus{}, err
	}
	newly := false
	j, err := a.store.update(id, func(j *Job) bool {
		if j.State == status.Finished || j.Cancelled {
			return false
		}
		j.Cancelled, j.CancelKind, newly = true, reason, true
		return true
	})
	if err != nil {
		return rpc.JobStatus{}, err
	}
	if !newly {
		return a.jobStatus(j), nil // finished, or already being cancelled
	}
	if j.InProcess && a.cancelHeld(j.ID) {
		return a.jobStatus(j), nil
	}
	// A held job's PID is the group its command started, signalled only
	// where ownsGroup says it is still that command's (settle): its cancel
	// is its context's, applied when the daemon notes it (callHeld).
	if a.isRunner(j) && j.PID > 0 && !j.InProcess {
		_ = syscall.Kill(-j.PID, syscall.SIGTERM)
		job := j
		go func() {
			t := time.NewTimer(cancelGrace)
			defer t.Stop()
			select {
			case <-t.C:
			case <-a.stop:
				return
			}
			// Whether or not the runner is still there, take down what is
			// left of its process group, if the group is still the job's.
			if a.ownsGroup(job) {
				_ = syscall.Kill(-job.PID, syscall.SIGKILL)
			}
		}()
	} else {
		if j, err = a.settle(j, false); err != nil {
			return rpc.JobStatus{}, err
		}
	}
	return a.jobStatus(j), nil
}

// list returns caller's jobs, newest first ("" for everyone's).
func (a *asyncJobs) list(limit int, caller string) ([]rpc.JobStatus, error) {
	js, err := a.store.list(limit, caller)
	if err != nil {
		return nil, err
	}
	budget := newReplyBudget(a.maxReply)
	out := make([]rpc.JobStatus, 0, len(js))
	for _, j := range js {
		st := a.jobStatus(j)
		budget.entry(&st)
		out = append(out, st)
	}
	return out, nil
}

// errNoAsync is returned by the async methods of a minion with no state
// directory (an in-process test minion).
var errNoAsync = status.Errorf(status.KindInternal, "this minion has no job store: async jobs are off")
