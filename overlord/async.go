package overlord

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/job"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/status"
)

// DefaultAsyncTimeout is an async job's deadline when none is given.
const DefaultAsyncTimeout = job.DefaultAsyncTimeout

// SubmitOption changes how Submit records an async job.
type SubmitOption func(*jobs.Record)

// Queue makes the job wait for minions that cannot be reached (--queue):
// their entries stay open and get the job when they come back, until the
// deadline (jobs.Record.Queue).
func Queue() SubmitOption { return func(r *jobs.Record) { r.Queue = true } }

// Submit records a prepared call as an async job (state RUNNING) and
// starts a detached driver for it. It does not touch the network.
func (o *Overlord) Submit(p *Prepared, timeout time.Duration, opts ...SubmitOption) (jobs.Record, error) {
	if timeout <= 0 {
		timeout = DefaultAsyncTimeout
	}
	batch, err := p.batchPlan()
	if err != nil {
		return jobs.Record{}, err
	}
	// The driver will need the identity: check it now, while someone is
	// there to read the error.
	id, err := o.Identity()
	if err != nil {
		return jobs.Record{}, err
	}
	identity, err := o.identityPath()
	if err != nil {
		return jobs.Record{}, err
	}
	forks := p.Spec.Forks
	if forks <= 0 {
		forks = fanout.DefaultForks
	}
	deadline := time.Now().Add(timeout).UTC()
	rec := &jobs.Record{
		ID: p.JobID, Target: p.Spec.Target, Module: p.Spec.Module, Method: p.Spec.Method,
		Args: p.Args, Positional: p.Positional, Async: true,
		TimeoutMS: timeout.Milliseconds(), Forks: forks, Deadline: &deadline,
		Identity: identity, Caller: id.Cert.Subject.CommonName, Batch: batch,
		SubmittedBy: p.SubmittedBy,
	}
	for _, opt := range opts {
		opt(rec)
	}
	if err := o.Jobs.Create(rec, p.Names()); err != nil {
		return jobs.Record{}, err
	}
	if _, err := o.StartDriver(*rec); err != nil {
		return *rec, fmt.Errorf("job %s is recorded but its driver did not start (run 'overlord job status %s' to retry): %w", rec.ID, rec.ID, err)
	}
	return *rec, nil
}

// Drive runs job id's driver in this process (job.Driver.Drive): as the
// identity that submitted the job, in the service on its pool and its
// shared status polls. lock, if not nil, is the job's driver lock, already
// held (handed over by StartDriver).
func (o *Overlord) Drive(ctx context.Context, id string, lock *os.File) error {
	dr := &job.Driver{Keeper: o.Jobs, Logger: o.Logger, Timings: o.driverTimings, Connect: o.connectDriver}
	if o.metrics != nil {
		dr.Observe = func(module, method string) func(string, status.Result) {
			return o.metrics.Method(module, method).Entry
		}
	}
	return dr.Drive(ctx, id, lock)
}

// connectDriver is how a driver reaches job rec's minions: a client as
// the identity that submitted it; in the service, the pool's, with its
// status hub.
func (o *Overlord) connectDriver(rec jobs.Record, minions []jobs.Minion) (job.Link, error) {
	as := o.as(rec.Identity)
	client, err := as.Client(minions, rec.Forks, DefaultConnectTimeout)
	if err != nil {
		return job.Link{}, err
	}
	link := job.Link{Client: client, Close: client.Close}
	if as.pool != nil && as.IdentityFile == as.pool.identity && as.pool.hub != nil {
		link.Poller = as.pool.hub
	}
	return link, nil
}

// identityPath returns the absolute path of the identity bundle in use,
// or "" for the state directory's own identity.
func (o *Overlord) identityPath() (string, error) {
	if o.IdentityFile == "" {
		return "", nil
	}
	return filepath.Abs(o.IdentityFile)
}

// StartDriver starts a detached driver for job rec: the overlord binary
// re-executed in a session of its own, logging to Jobs.LogPath(id), with the
// identity the job was submitted with (minions key their jobs by caller,
// so another identity could not find them). It takes the job's driver
// lock first and hands it to the driver, so there is never a moment when a
// starting driver looks dead; if another driver holds the lock, it starts
// nothing and reports false.
//
// In the service, the job is driven there (no process); a process that
// goes through the service asks it to drive the job, and starts a
// detached driver only if the service cannot.
func (o *Overlord) StartDriver(rec jobs.Record) (bool, error) {
	id := rec.ID
	if o.sched != nil {
		return o.sched.start(id)
	}
	if o.service != nil {
		ok, err := o.service.drive(id)
		if err == nil {
			o.Logger.Debug("the service drives the job", "job", id, "driving", ok)
			return ok, nil
		}
		o.Logger.Warn("the service did not take the job; starting a driver process", "job", id, "err", err)
	}
	if o.Store.IsEtcd() {
		// A driver's lock is this machine's; on a shared store only the
		// services adopt jobs, each within seconds (docs/ha.md).
		o.Logger.Info("the store is shared (etcd): the job is left for an overlord service to drive", "job", id)
		return false, nil
	}
	lock, ok, err := o.Jobs.Lock(id)
	if err != nil || !ok {
		return false, err
	}
	defer lock.Close() // the driver holds its own copy
	argv := o.DriverCommand
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return false, err
		}
		argv = []string{exe}
	}
	args := append(append([]string(nil), argv[1:]...), "--state-dir", o.Dir, "--lock-timeout", o.Store.LockTimeout().String())
	args = append(args, o.storeArgs()...)
	if rec.Identity != "" {
		args = append(args, "--identity", rec.Identity)
	}
	args = append(args, "job", "drive", "--lock-fd", "3", id)
	log, err := os.OpenFile(o.Jobs.LogPath(id), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return false, err
	}
	defer log.Close()
	cmd := exec.Command(argv[0], args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.ExtraFiles = []*os.File{lock} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return false, err
	}
	// The driver is detached: nobody waits for it. Release lets it be
	// reparented and reaped by init when this process exits.
	return true, cmd.Process.Release()
}

// EnsureDriver looks after a job that is not FINISHED and that no process
// holds, and reports whether it started a driver. An async job, or a
// synchronous one carried on past its wait, gets a new driver. So does a
// synchronous job whose `overlord call` died, recorded with what a driver
// needs: the driver adopts what the minions kept of the call and never
// calls them again (the minions it had not reached end lost). An older
// synchronous job without that record is settled: the minions that had
// not answered are FINISHED with kind lost.
func (o *Overlord) EnsureDriver(rec jobs.Record) (bool, error) {
	if rec.State == status.Finished || o.Jobs.Alive(rec.ID) {
		return false, nil
	}
	if o.Store.IsEtcd() && o.sched == nil {
		// On a shared store, whether a driver lives elsewhere is not
		// known here (its lock is another machine's): only the service
		// adopts jobs (docs/ha.md).
		return false, nil
	}
	if !rec.Async && rec.Deadline == nil {
		return false, o.Jobs.SettleOrphan(rec.ID)
	}
	o.Logger.Info("job has no driver; starting one", "job", rec.ID)
	return o.StartDriver(rec)
}
