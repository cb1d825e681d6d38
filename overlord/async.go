package overlord

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/status"
)

// DefaultAsyncTimeout is an async job's deadline when none is given.
const DefaultAsyncTimeout = time.Hour

// Submit records a prepared call as an async job (state RUNNING) and
// starts a detached driver for it. It does not touch the network.
func (o *Overlord) Submit(p *Prepared, timeout time.Duration) (jobs.Record, error) {
	if timeout <= 0 {
		timeout = DefaultAsyncTimeout
	}
	forks := p.Spec.Forks
	if forks <= 0 {
		forks = fanout.DefaultForks
	}
	deadline := time.Now().Add(timeout).UTC()
	rec := &jobs.Record{
		Target: p.Spec.Target, Module: p.Spec.Module, Method: p.Spec.Method,
		Args: p.Args, Positional: p.Positional, Async: true,
		TimeoutMS: timeout.Milliseconds(), Forks: forks, Deadline: &deadline,
	}
	if err := o.Store.CreateJob(rec, p.Names()); err != nil {
		return jobs.Record{}, err
	}
	if err := o.StartDriver(rec.ID); err != nil {
		return *rec, fmt.Errorf("job %s is recorded but its driver did not start (run 'overlord job status %s' to retry): %w", rec.ID, rec.ID, err)
	}
	return *rec, nil
}

func (o *Overlord) driverDir() string { return filepath.Join(o.Dir, "drivers") }

// driverLock is the file a job's driver holds an exclusive lock on for
// as long as it lives: the lock, not a pid, says whether it is alive.
func (o *Overlord) driverLock(id string) string { return filepath.Join(o.driverDir(), id+".lock") }

// DriverLog is where a job's driver logs.
func (o *Overlord) DriverLog(id string) string { return filepath.Join(o.driverDir(), id+".log") }

// StartDriver starts a detached driver for job id: the overlord binary
// re-executed in a session of its own, logging to DriverLog(id). It takes
// the job's driver lock first and hands it to the driver, so there is
// never a moment when a starting driver looks dead; if another driver
// holds the lock, it starts nothing.
func (o *Overlord) StartDriver(id string) error {
	lock, ok, err := o.lockDriver(id)
	if err != nil || !ok {
		return err
	}
	defer lock.Close() // the driver holds its own copy
	argv := o.DriverCommand
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		argv = []string{exe}
	}
	args := append(append([]string(nil), argv[1:]...), "--state-dir", o.Dir, "--lock-timeout", o.Store.LockTimeout().String())
	if o.IdentityFile != "" {
		abs, err := filepath.Abs(o.IdentityFile)
		if err != nil {
			return err
		}
		args = append(args, "--identity", abs)
	}
	args = append(args, "job", "drive", "--lock-fd", "3", id)
	log, err := os.OpenFile(o.DriverLog(id), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(argv[0], args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.ExtraFiles = []*os.File{lock} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	// The driver is detached: nobody waits for it. Release lets it be
	// reparented and reaped by init when this process exits.
	return cmd.Process.Release()
}

// DriverAlive reports whether some process is driving job id.
func (o *Overlord) DriverAlive(id string) bool {
	f, err := os.Open(o.driverLock(id))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// EnsureDriver starts a driver for a job that is not FINISHED and has none.
// It reports whether it started one.
func (o *Overlord) EnsureDriver(rec jobs.Record) (bool, error) {
	if rec.State == status.Finished || !rec.Async || o.DriverAlive(rec.ID) {
		return false, nil
	}
	o.Logger.Info("job has no driver; starting one", "job", rec.ID)
	return true, o.StartDriver(rec.ID)
}

// lockDriver takes job id's driver lock, or returns ok=false if another
// driver holds it. Closing the file releases the lock.
func (o *Overlord) lockDriver(id string) (lock *os.File, ok bool, err error) {
	if err := os.MkdirAll(o.driverDir(), 0o700); err != nil {
		return nil, false, err
	}
	f, err := os.OpenFile(o.driverLock(id), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return f, true, nil
}

// removeDriverFiles deletes a purged job's lock and log.
func (o *Overlord) removeDriverFiles(id string) {
	os.Remove(o.driverLock(id))
	os.Remove(o.DriverLog(id))
}

// Purge deletes FINISHED jobs created before cutoff, except the keep
// newest, with their driver files.
func (o *Overlord) Purge(cutoff time.Time, keep int) ([]string, error) {
	gone, err := o.Store.Purge(cutoff, keep)
	for _, id := range gone {
		o.removeDriverFiles(id)
	}
	return gone, err
}
