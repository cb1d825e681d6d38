package overlord

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/overlordhq/overlord/job"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/status"
)

// Rolling batches (--batch, --batch-wait, --max-fail): a job's minions
// run a batch at a time, the next batch starting when every minion of the
// previous one has finished. The plan is recorded with the job
// (jobs.Batch, and each entry's batch number), and job.PlanBatch reads where
// the job stands from the record alone, so the synchronous run loop and
// an async job's driver (a new one too, after the last was killed) take
// the same decisions.

// Count is a number of minions as typed on the command line: N, or N% of
// the target.
type Count struct {
	N       int
	Percent bool
}

// ParseCount parses N or N% (a whole number; a percentage at most 100).
func ParseCount(s string) (Count, error) {
	num, pct := strings.CutSuffix(strings.TrimSpace(s), "%")
	n, err := strconv.Atoi(num)
	if err != nil || num == "" || num[0] == '+' {
		return Count{}, fmt.Errorf("want a number of minions N or a percentage of the target N%%, got %q", s)
	}
	if n < 0 {
		return Count{}, fmt.Errorf("%q is negative", s)
	}
	if pct && n > 100 {
		return Count{}, fmt.Errorf("%q is more than the whole target (100%%)", s)
	}
	return Count{N: n, Percent: pct}, nil
}

func (c Count) String() string {
	if c.Percent {
		return strconv.Itoa(c.N) + "%"
	}
	return strconv.Itoa(c.N)
}

// ceilOf returns c as a number of minions out of total, a percentage
// rounded up.
func (c Count) ceilOf(total int) int {
	if !c.Percent {
		return c.N
	}
	return (c.N*total + 99) / 100
}

// floorOf returns c as a number of minions out of total, a percentage
// rounded down.
func (c Count) floorOf(total int) int {
	if !c.Percent {
		return c.N
	}
	return c.N * total / 100
}

// BatchSpec asks for a call to run a batch of minions at a time.
type BatchSpec struct {
	// Size is how many minions a batch holds: N, or N% of the target
	// rounded up (at least one). Zero: the call is not batched.
	Size Count
	// Wait is the pause between the end of a batch and the start of the
	// next.
	Wait time.Duration
	// MaxFail, if set: once more minions than this (N, or N% of the
	// target) have failed, no new batch starts and the minions left end
	// with kind skipped. The batch running then finishes.
	MaxFail *Count
}

// Batched reports whether b asks for batches.
func (b BatchSpec) Batched() bool { return b.Size.N > 0 }

// Check reports a BatchSpec that makes no sense, in the words of the
// command line's flags.
func (b BatchSpec) Check() error {
	switch {
	case b.Size.N < 0 || (b.Size.Percent && b.Size.N == 0):
		return fmt.Errorf("--batch must be at least 1 (or 1%%), got %s", b.Size)
	case b.Size.Percent && b.Size.N > 100:
		return fmt.Errorf("--batch %s is more than the whole target (100%%)", b.Size)
	case b.Wait < 0:
		return fmt.Errorf("--batch-wait must not be negative, got %s", b.Wait)
	case b.MaxFail != nil && (b.MaxFail.N < 0 || (b.MaxFail.Percent && b.MaxFail.N > 100)):
		return fmt.Errorf("--max-fail must be 0 to N or 0%% to 100%%, got %s", b.MaxFail)
	case !b.Batched() && b.Wait > 0:
		return fmt.Errorf("--batch-wait needs --batch: it is the pause between batches")
	case !b.Batched() && b.MaxFail != nil:
		return fmt.Errorf("--max-fail needs --batch: it stops the batches not started yet, and without --batch every minion starts at once")
	}
	return nil
}

// batchPlan returns the batch plan to record with a job of p, or nil if p
// is not batched.
func (p *Prepared) batchPlan() (*jobs.Batch, error) {
	b := p.Spec.Batch
	if err := b.Check(); err != nil || !b.Batched() {
		return nil, err
	}
	total := len(p.Minions)
	size := max(1, b.Size.ceilOf(total))
	plan := &jobs.Batch{Size: size, Count: max(1, (total+size-1)/size), WaitMS: b.Wait.Milliseconds(), MaxFail: -1}
	if b.MaxFail != nil {
		plan.MaxFail, plan.MaxFailSpec = b.MaxFail.floorOf(total), b.MaxFail.String()
	}
	return plan, nil
}

// runBatches runs a batched synchronous job: a batch at a time through
// runBatch (which hands every result to got), as job.PlanBatch decides. It
// ends the entries it does not start through got too (skipped, or
// cancelled when ctx ends first), so that every minion has one result.
// entries holds every minion's entry, pending ones with their batch
// number.
//
// If runBatch leaves some of its batch open (the call stopped waiting, or
// was interrupted, and hands the job to a driver), runBatches returns at
// once: interrupted, it cancels the batches not started; otherwise it
// returns their minions, for the driver to submit them. So it does if
// the call stops waiting (stopAt, if not zero: a synchronous call's
// --timeout) during the pause before a batch (--batch-wait).
func (o *Overlord) runBatches(ctx context.Context, p *Prepared, rc *job.Recorder, entries map[string]status.Result,
	runBatch func([]jobs.Minion), got func(jobs.Minion, status.Result), stopAt time.Time) (later []string) {
	byName := make(map[string]jobs.Minion, len(p.Minions))
	for _, m := range p.Minions {
		byName[m.Name] = m
	}
	plan := *rc.Header().Batch
	for {
		now := time.Now()
		step := job.PlanBatch(plan, entries, now)
		if step.Note(&plan, now) {
			b := plan
			if err := rc.Flush(func(r *jobs.Record) error { r.Batch = &b; return nil }); err != nil {
				o.Logger.Debug("could not record the batch's end; will retry with the next results", "job", p.JobID, "err", err)
			}
		}
		for _, n := range slices.Sorted(maps.Keys(step.Skip)) {
			got(byName[n], step.Skip[n])
		}
		if step.Over {
			return nil
		}
		if ctx.Err() != nil {
			cancelBatches(p, entries, 0, got)
			return nil
		}
		if step.Wait > 0 {
			wait := step.Wait
			if !stopAt.IsZero() {
				if wait = min(wait, time.Until(stopAt)); wait <= 0 {
					// The call stops waiting: the batches from this one
					// on are the driver's.
					for _, m := range p.Minions {
						if r := entries[m.Name]; r.State != status.Finished && r.Batch >= step.Batch {
							later = append(later, m.Name)
						}
					}
					return later
				}
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
			continue
		}
		if len(step.Start) == 0 {
			return nil // nothing to start and the batch is open: not ours to wait for
		}
		start := make(map[string]bool, len(step.Start))
		for _, n := range step.Start {
			start[n] = true
		}
		batch := make([]jobs.Minion, 0, len(step.Start))
		for _, m := range p.Minions { // in target order
			if start[m.Name] {
				batch = append(batch, m)
			}
		}
		if unsent := rc.Header().Unsent; slices.ContainsFunc(unsent, func(n string) bool { return start[n] }) {
			// Recorded before anything is sent: from now on a driver
			// adopts these minions' calls, never submits them.
			err := rc.Flush(func(r *jobs.Record) error {
				r.Unsent = slices.DeleteFunc(slices.Clone(r.Unsent), func(n string) bool { return start[n] })
				return nil
			})
			if err != nil {
				// Not sent, then: this batch and the next are the driver's.
				o.Logger.Warn("could not record the start of a batch; the job's driver will start it", "job", p.JobID, "batch", step.Batch, "err", err)
				for _, m := range p.Minions {
					if r := entries[m.Name]; r.State != status.Finished && r.Batch >= step.Batch {
						later = append(later, m.Name)
					}
				}
				return later
			}
		}
		o.Logger.Debug("starting batch", "job", p.JobID, "batch", step.Batch, "of", step.Batches, "minions", len(batch))
		if p.Spec.OnBatch != nil {
			started := 0 // the minions of batches 1 to this one
			for _, r := range entries {
				if r.Batch <= step.Batch {
					started++
				}
			}
			p.Spec.OnBatch(step.Batch, step.Batches, started)
		}
		runBatch(batch)
		for _, m := range batch {
			if entries[m.Name].State == status.Finished {
				continue
			}
			// The step left its minion running: a driver carries the job on.
			if ctx.Err() != nil {
				cancelBatches(p, entries, step.Batch, got)
				return nil
			}
			for _, m := range p.Minions {
				if r := entries[m.Name]; r.State != status.Finished && r.Batch > step.Batch {
					later = append(later, m.Name)
				}
			}
			return later
		}
	}
}

// cancelBatches ends cancelled the entries of the batches after batch
// that have not started: the call was interrupted.
func cancelBatches(p *Prepared, entries map[string]status.Result, batch int, got func(jobs.Minion, status.Result)) {
	for _, m := range p.Minions {
		if r := entries[m.Name]; r.State != status.Finished && r.Batch > batch {
			got(m, status.Result{State: status.Finished, Batch: r.Batch,
				Error: status.Errorf(status.KindCancelled, "the call was interrupted before this minion's batch %d started", r.Batch)})
		}
	}
}
