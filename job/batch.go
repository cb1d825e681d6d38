package job

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/status"
)

// BatchStep is what a batched job may do next.
type BatchStep struct {
	// Batch is the batch to start, or the one running; Batches how many
	// there are.
	Batch, Batches int
	// Start holds the minions of Batch to start now, sorted: the whole
	// batch when it starts, or those a driver that died mid-batch had not
	// reached yet.
	Start []string
	// Skip holds the entries to end skipped: --max-fail was crossed
	// before their batch started.
	Skip map[string]status.Result
	// Wait, if positive, is how long to wait before Batch starts
	// (--batch-wait).
	Wait time.Duration
	// Done is how many batches have finished.
	Done int
	// Over: every entry is FINISHED, or will be once Skip is recorded.
	Over bool
}

// begun reports whether an entry's minion was started, or tried and
// queued (--queue), or ended without being started (by a cancel or the
// deadline).
func begun(r status.Result) bool {
	return r.State == status.Finished || r.MinionJobID != "" || r.Queued()
}

// PlanBatch decides what a batched job does next, from its plan and its
// entries alone. The batch running is the first with an entry not
// FINISHED. If any of its minions was started, the rest of it may start
// too. Otherwise it is a new batch: if more minions than --max-fail have
// failed, it and every later batch are skipped; if the previous batch
// finished less than --batch-wait ago, it waits; else it starts.
func PlanBatch(plan jobs.Batch, entries map[string]status.Result, now time.Time) BatchStep {
	step := BatchStep{Batches: plan.Count}
	failed, current := 0, 0
	for _, r := range entries {
		k := max(r.Batch, 1)
		step.Batches = max(step.Batches, k)
		if r.Failed() && !r.Skipped() {
			failed++
		}
		if r.State != status.Finished && (current == 0 || k < current) {
			current = k
		}
	}
	if current == 0 {
		step.Done, step.Over = step.Batches, true
		return step
	}
	step.Batch, step.Done = current, current-1
	started := false
	var waiting []string
	for n, r := range entries {
		if max(r.Batch, 1) != current {
			continue
		}
		if begun(r) {
			started = true
		} else {
			waiting = append(waiting, n)
		}
	}
	slices.Sort(waiting)
	if started {
		step.Start = waiting
		return step
	}
	if plan.MaxFail >= 0 && failed > plan.MaxFail {
		limit := plan.MaxFailSpec
		if limit == "" {
			limit = strconv.Itoa(plan.MaxFail)
		}
		if strings.HasSuffix(limit, "%") {
			limit += fmt.Sprintf(" of %d minions", len(entries))
		}
		step.Skip = map[string]status.Result{}
		for n, r := range entries {
			if r.State != status.Finished {
				step.Skip[n] = status.Result{State: status.Finished, Batch: r.Batch,
					Error: status.Errorf(status.KindSkipped, "not started: %d minion%s failed, more than --max-fail %s", failed, plural(failed), limit)}
			}
		}
		step.Over = true
		return step
	}
	if current > 1 && plan.WaitMS > 0 {
		since := now // the previous batch ends now, as far as the record knows
		if plan.Done >= current-1 && plan.DoneAt != nil {
			since = *plan.DoneAt
		}
		if left := since.Add(time.Duration(plan.WaitMS) * time.Millisecond).Sub(now); left > 0 {
			step.Wait = left
			return step
		}
	}
	step.Start = waiting
	return step
}

// Note records in plan the batches step found done, and when: the next
// batch's --batch-wait counts from then. It reports whether plan changed.
func (step BatchStep) Note(plan *jobs.Batch, now time.Time) bool {
	if step.Done <= plan.Done {
		return false
	}
	at := now.UTC()
	plan.Done, plan.DoneAt = step.Done, &at
	return true
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
