package overlord

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/job"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/status"
)

// DefaultReconcileWindow is how long after a job finished ReconcileDue
// still asks its minions for the results the driver gave up on.
const DefaultReconcileWindow = 24 * time.Hour

var (
	// ErrNotFinished is returned by Reconcile for a job that is not
	// FINISHED: its driver is still at work.
	ErrNotFinished = errors.New("the job is not FINISHED")

	// ErrBeingDriven is returned by Reconcile for a job whose driver lock
	// another process holds (a driver finishing, another reconcile).
	ErrBeingDriven = errors.New("the job is still being driven")
)

// Reconcile replaces the late entries of FINISHED job id (a unique prefix
// will do) with their minions' own results: entries the overlord ended
// itself, unreachable or timeout, after their minion job was submitted.
// Each such minion is asked for its job (Minion.Status, as the identity
// that submitted the job); a job FINISHED there, and not lost, becomes
// the entry, marked reconciled, with the error it replaces kept as
// error_before_reconcile. A minion still out of reach, or whose job still
// runs, leaves its entry as it is, for a later reconcile. Only the
// entries replaced are written, with the summary recomputed from every
// entry, under the job's driver lock so that it never races a driver.
// It returns the job's header as it stands and how many entries it
// replaced.
func (o *Overlord) Reconcile(ctx context.Context, id string) (jobs.Record, int, error) {
	rec, entries, err := o.Store.Job(id)
	if err != nil {
		return rec, 0, err
	}
	if rec.State != status.Finished {
		return rec, 0, fmt.Errorf("job %s is %s: %w; wait for it ('overlord job status %s --wait') or see where it stands ('overlord job status %s')",
			rec.ID, rec.State, ErrNotFinished, rec.ID, rec.ID)
	}
	if len(lateEntries(entries)) == 0 {
		return rec, 0, nil
	}
	lock, ok, err := o.Jobs.Lock(rec.ID)
	if err != nil {
		return rec, 0, err
	}
	if !ok {
		return rec, 0, fmt.Errorf("job %s: %w by another process; try again in a moment", rec.ID, ErrBeingDriven)
	}
	defer lock.Close()
	// Read it again under the lock: another reconcile may have been first.
	if rec, entries, err = o.Store.Job(rec.ID); err != nil {
		return rec, 0, err
	}
	late := lateEntries(entries)
	if len(late) == 0 {
		return rec, 0, nil
	}
	client, err := o.jobClient(rec)
	if err != nil {
		return rec, 0, fmt.Errorf("job %s: cannot ask its minions: %w", rec.ID, err)
	}
	defer client.Close()
	jobIDs := make(map[string]string, len(late)) // read by the workers
	for _, n := range late {
		jobIDs[n] = entries[n].MinionJobID
	}
	got := map[string]status.Result{}
	fanout.Run(ctx, late, rec.Forks, func(ctx context.Context, name string) job.PollResult {
		return job.MinionStatus(ctx, client, name, jobIDs[name], 0)
	}, func(name string, pr job.PollResult) {
		if r, ok := reconciled(entries[name], pr); ok {
			got[name] = r
		}
	})
	if len(got) == 0 {
		return rec, 0, ctx.Err()
	}
	var sum status.Summary
	for n, e := range entries {
		if r, ok := got[n]; ok {
			e = r
		}
		sum.Add(e)
	}
	rec, err = o.Store.Write(rec.ID, got, func(r *jobs.Record) error {
		r.Summary = sum
		return nil
	})
	if err != nil {
		return rec, 0, err
	}
	o.Logger.Info("reconciled late results", "job", rec.ID, "entries", len(got), "ok", rec.Summary.OK, "failed", rec.Summary.Failed)
	return rec, len(got), nil
}

// ReconcileDue reconciles (Reconcile) every job FINISHED within window
// before now (DefaultReconcileWindow if window is not positive) that has
// late entries. A job whose driver lock is held is skipped, for the next
// pass. It returns how many entries it replaced in all, and the errors
// of the jobs it could not reconcile, joined.
func (o *Overlord) ReconcileDue(ctx context.Context, window time.Duration, now time.Time) (int, error) {
	if window <= 0 {
		window = DefaultReconcileWindow
	}
	recs, err := o.Store.ListJobs(jobs.ListOptions{State: status.Finished, FinishedSince: now.Add(-window)})
	if err != nil {
		return 0, err
	}
	total := 0
	var errs []error
	for _, rec := range recs {
		if ctx.Err() != nil {
			return total, errors.Join(append(errs, ctx.Err())...)
		}
		_, n, err := o.Reconcile(ctx, rec.ID)
		total += n
		if err != nil && !errors.Is(err, ErrBeingDriven) {
			errs = append(errs, err)
		}
	}
	return total, errors.Join(errs...)
}

// lateEntries returns the minions whose entries a reconcile may replace,
// sorted: FINISHED by the overlord itself, unreachable or timeout, after
// their minion job was submitted, and not reconciled yet.
func lateEntries(entries map[string]status.Result) []string {
	var out []string
	for n, e := range entries {
		if e.State != status.Finished || e.MinionJobID == "" || e.Reconciled || e.Error == nil {
			continue
		}
		if e.Error.Kind == status.KindUnreachable || e.Error.Kind == status.KindTimeout {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// reconciled returns the entry that replaces old, from its minion's
// answer pr, if the minion's job is FINISHED and not lost (a job the
// minion lost track of says nothing the entry does not).
func reconciled(old status.Result, pr job.PollResult) (status.Result, bool) {
	r := pr.R
	if pr.Err != nil || r.State != status.Finished || (r.Error != nil && r.Error.Kind == status.KindLost) {
		return status.Result{}, false
	}
	r.Batch, r.Reconciled, r.ErrorBeforeReconcile = old.Batch, true, old.Error
	return r, true
}
