package overlord

import (
	"context"
	"fmt"

	"github.com/overlordhq/overlord/job"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// Cancel asks for job id to be cancelled: the request is recorded for its
// driver (which stops anything not yet submitted and confirms each
// minion's end), and the minion jobs already running are sent
// Minion.Cancel at once. It returns the job's header.
func (o *Overlord) Cancel(ctx context.Context, id string) (jobs.Record, error) {
	hdr, err := o.Store.Header(id) // id may be a prefix
	if err != nil {
		return hdr, err
	}
	rec, err := o.Store.Update(hdr.ID, func(r *jobs.Record) error {
		if !r.Async && (r.Deadline == nil || r.State == status.Finished) {
			return fmt.Errorf("job %s was synchronous and has finished; there is nothing to cancel", r.ID)
		}
		if r.State != status.Finished {
			r.CancelRequested = true
		}
		return nil
	})
	if err != nil || rec.State == status.Finished {
		return rec, err
	}
	_, entries, err := o.Store.Job(rec.ID)
	if err != nil {
		return rec, err
	}
	var open []string
	for n, e := range entries {
		if e.State != status.Finished && e.MinionJobID != "" {
			open = append(open, n)
		}
	}
	if len(open) > 0 {
		client, err := o.jobClient(rec)
		if err != nil {
			return rec, err
		}
		defer client.Close()
		job.CancelMinionJobs(ctx, client, rec.Forks, entries, open, status.KindCancelled, o.Logger)
	}
	_, err = o.EnsureDriver(rec)
	return rec, err
}

// jobClient returns a client to the registered minions as the identity
// that submitted job rec: minions show each caller only its own jobs.
// The caller closes it.
func (o *Overlord) jobClient(rec jobs.Record) (*rpc.Client, error) {
	inv, err := o.Store.Inventory()
	if err != nil {
		return nil, err
	}
	as := *o
	as.IdentityFile = rec.Identity
	return as.Client(inv.Minions, rec.Forks, DefaultConnectTimeout)
}
