package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// DefaultAsyncTimeout is an async job's deadline when none is given.
const DefaultAsyncTimeout = time.Hour

// Driver timing.
const (
	submitAttempts = 5                // network failures before a minion is unreachable (or queued)
	RPCTimeout     = 15 * time.Second // bound on one Submit, Status or Cancel
	pollFirst      = 200 * time.Millisecond
	pollMax        = 2 * time.Second
	// PollWait is how long a minion may hold a status call until its job
	// changes state (a long poll); between rounds the driver backs off
	// from pollFirst to pollMax only while minions fail to answer.
	PollWait = 5 * time.Second
	// cancelWait is how long after a cancel the driver waits for minions
	// to confirm before it calls their entries cancelled.
	cancelWait = 15 * time.Second
	// cancelCheckEvery bounds how often the driver reads the store to see
	// whether the job was cancelled.
	cancelCheckEvery = 250 * time.Millisecond
	// pauseCheckEvery bounds how long a driver pausing between batches
	// (--batch-wait) takes to notice a cancel.
	pauseCheckEvery = time.Second
	// While overlord.db stays busy (each try waits up to the lock
	// timeout), the driver tries again after busyBackoff, doubled up to
	// busyBackoffMax, with jitter so that drivers do not retry in step.
	busyBackoff    = 100 * time.Millisecond
	busyBackoffMax = 5 * time.Second
)

// Timings are the driver's waits that tests shorten; a zero field means
// its default. The product never changes them.
type Timings struct {
	// SubmitBackoff is the first delay before a submit that failed on
	// the network is tried again, doubled up to MaxSubmitBackoff.
	SubmitBackoff    time.Duration
	MaxSubmitBackoff time.Duration
	// UnreachableAfter is how long a minion may stay out of reach while
	// its job runs (a restart, a network blip) before its entry is
	// FINISHED unreachable; never, for a --queue job, before the
	// deadline.
	UnreachableAfter time.Duration
	// A minion queued (--queue) is probed (a submit) QueueProbeFirst
	// after it was queued, then at delays doubled up to QueueProbeMax,
	// with jitter.
	QueueProbeFirst time.Duration
	QueueProbeMax   time.Duration
}

// defaultTimings returns the driver's waits.
func defaultTimings() Timings {
	return Timings{
		SubmitBackoff: 500 * time.Millisecond, MaxSubmitBackoff: 8 * time.Second,
		UnreachableAfter: 60 * time.Second,
		QueueProbeFirst:  time.Second, QueueProbeMax: 30 * time.Second,
	}
}

// orDefault fills t's zero fields from defaultTimings.
func (t Timings) orDefault() Timings {
	pick := func(v, d time.Duration) time.Duration {
		if v > 0 {
			return v
		}
		return d
	}
	d := defaultTimings()
	return Timings{
		SubmitBackoff: pick(t.SubmitBackoff, d.SubmitBackoff), MaxSubmitBackoff: pick(t.MaxSubmitBackoff, d.MaxSubmitBackoff),
		UnreachableAfter: pick(t.UnreachableAfter, d.UnreachableAfter),
		QueueProbeFirst:  pick(t.QueueProbeFirst, d.QueueProbeFirst), QueueProbeMax: pick(t.QueueProbeMax, d.QueueProbeMax),
	}
}

// Caller calls a minion's JSON-RPC method; *rpc.Client is one.
type Caller interface {
	Call(ctx context.Context, minion, method string, params, reply any) error
}

// Poller asks a minion for one of its jobs' state, holding the call up
// to wait for a change: in the service, the status polls its drivers
// share.
type Poller interface {
	Status(ctx context.Context, name, jobID string, wait time.Duration) PollResult
}

var _ Caller = (*rpc.Client)(nil)

// Link is how a driver reaches its job's minions.
type Link struct {
	Client Caller
	// Poller, if not nil, asks for the minion jobs' states instead of
	// Client's own Minion.Status calls.
	Poller Poller
	// Close, if not nil, is called when the driver is done.
	Close func()
}

// Driver drives async jobs (Drive). The CLI's detached driver and the
// service's scheduler each make one.
type Driver struct {
	Keeper *Keeper
	Logger *slog.Logger
	// Connect returns the way to job rec's minions (the registry's
	// minions), as the identity that submitted it.
	Connect func(rec jobs.Record, minions []jobs.Minion) (Link, error)
	Timings Timings
	// Observe, if not nil, returns what to tell of the entries a driver
	// of a job of module.method sets (the overlord service's metrics): each
	// change of an open entry, and each entry's end, once. It may return
	// nil.
	Observe func(module, method string) func(minion string, r status.Result)
}

// jitter returns a delay between d/2 and d, so that drivers waiting
// alike do not try again in step.
func jitter(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) }

// whileBusy runs op until it succeeds, fails for a reason other than a
// busy store (jobs.ErrLocked), or ctx ends. A busy store is no reason for
// a driver to give up its job: past the deadline too, the job's end must
// be recorded, so it waits as long as the store stays busy.
func whileBusy(ctx context.Context, logger *slog.Logger, id, what string, op func() error) error {
	backoff := busyBackoff
	for tries := 1; ; tries++ {
		err := op()
		if err == nil || !errors.Is(err, jobs.ErrLocked) {
			return err
		}
		logger.Warn("overlord.db is busy; will try again", "job", id, "to", what, "tries", tries, "retry_in", backoff.Round(time.Millisecond))
		t := time.NewTimer(jitter(backoff))
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(backoff*2, busyBackoffMax)
	}
}

// driver carries one async job from RUNNING to FINISHED.
type driver struct {
	k       *Keeper
	logger  *slog.Logger
	t       Timings
	client  Caller
	poller  Poller // in the service: the status polls all its drivers share
	rc      *Recorder
	observe func(minion string, r status.Result) // Driver.Observe's, or nil
	entries map[string]status.Result
	// lastSubmitErr is why each minion's last submit failed on the
	// network (submitAll), for the entry of one the deadline ends first.
	lastSubmitErr map[string]*status.Error
	// lastPollErr is why each open minion's last status poll failed, if
	// it did; deleted by an answer.
	lastPollErr map[string]*status.Error
	names       []string // every minion of the job, sorted
	forks       int
	batch       *jobs.Batch // a batched job's plan, as driven so far; nil if not batched

	cancelMu  sync.Mutex
	cancelAt  time.Time // when the store was last asked
	cancelled bool
}

// Drive runs the async flow of job id to FINISHED: Minion.Submit to
// every minion not yet submitted to (retried on network failures; the
// minion maps the same job ID to the same minion job, so nothing runs
// twice), PARTIAL once all have answered, then Minion.Status polls with
// backoff until every entry is FINISHED, within the job's deadline. If
// another driver holds the job, Drive returns at once. lock, if not nil,
// is the job's driver lock, already held (handed over by whoever started
// the driver).
//
// If the lock is lost while the job is driven (Lock.Lost: an etcd lease
// gone), Drive stops at once: it calls no minion and writes nothing more,
// and returns ErrLockLost; the job is left to whoever holds its lock next.
func (dr *Driver) Drive(ctx context.Context, id string, lock Lock) error {
	k, logger := dr.Keeper, dr.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if lock == nil {
		var ok bool
		var err error
		if lock, ok, err = k.Lock(id); err != nil {
			return err
		} else if !ok {
			logger.Info("another driver holds the job", "job", id)
			return nil
		}
	}
	defer lock.Close()
	lost := lock.Lost()
	ctx, cancel := UntilLost(ctx, lock, nil)
	defer cancel()
	if lost != nil {
		defer func() {
			if isLost(lost) {
				logger.Error("the job's lock was lost: its driver stopped at once, writing nothing more", "job", id)
			}
		}()
	}
	if lost == nil {
		return dr.drive(ctx, id, k, logger, nil)
	}
	// Drive returns as soon as the lock is lost: what the driver's
	// goroutine may still be doing (waiting on a store that does not
	// answer) can neither call a minion nor write (fencedCaller,
	// Recorder.StopOn).
	done := make(chan error, 1)
	go func() { done <- dr.drive(ctx, id, k, logger, lost) }()
	select {
	case err := <-done:
		if isLost(lost) {
			return fmt.Errorf("job %s: %w", id, ErrLockLost)
		}
		return err
	case <-lost:
		return fmt.Errorf("job %s: %w", id, ErrLockLost)
	}
}

// ErrLockLost is returned by Drive when the job's lock was lost while it
// was driven.
var ErrLockLost = errors.New("the job's driver lock was lost (cut off from etcd); the driver stopped and left the job to the lock's next holder")

func isLost(lost <-chan struct{}) bool {
	if lost == nil {
		return false
	}
	select {
	case <-lost:
		return true
	default:
		return false
	}
}

func (dr *Driver) drive(ctx context.Context, id string, k *Keeper, logger *slog.Logger, lost <-chan struct{}) error {
	var rec jobs.Record
	var entries map[string]status.Result
	if err := whileBusy(ctx, logger, id, "read the job", func() (err error) {
		rec, entries, err = k.Store.Job(id)
		return err
	}); err != nil {
		return err
	}
	if rec.State == status.Finished {
		return nil
	}
	var inv *jobs.Inventory
	if err := whileBusy(ctx, logger, id, "read the registry", func() (err error) {
		inv, err = k.Store.Inventory()
		return err
	}); err != nil {
		return err
	}
	link, err := dr.Connect(rec, inv.Minions)
	if err != nil {
		// Leave the job as it is: a driver started once the problem is
		// fixed (job status starts one) carries it on.
		return fmt.Errorf("job %s: the driver cannot reach minions: %w", id, err)
	}
	if link.Close != nil {
		defer link.Close()
	}
	if lost != nil {
		// No minion is called once the lock is lost, whatever the
		// driver was about to do.
		link.Client = fencedCaller{c: link.Client, lost: lost}
		if link.Poller != nil {
			link.Poller = fencedPoller{p: link.Poller, lost: lost}
		}
	}
	d := &driver{k: k, logger: logger, t: dr.Timings.orDefault(), client: link.Client, poller: link.Poller,
		rc: NewRecorder(k.Store, rec), entries: entries, forks: rec.Forks}
	d.rc.StopOn(lost)
	defer d.rc.Close()
	if dr.Observe != nil {
		d.observe = dr.Observe(rec.Module, rec.Method)
	}
	for n := range entries {
		d.names = append(d.names, n)
	}
	sort.Strings(d.names)
	logger.Info("driving job", "job", id, "minions", len(entries))
	if rec.Batch != nil {
		plan := *rec.Batch
		d.batch = &plan
		err = d.driveBatches(ctx)
	} else {
		err = d.driveAll(ctx)
	}
	if err != nil {
		return err
	}
	if err := whileBusy(ctx, logger, id, "record the job's end", d.rc.Finish); err != nil {
		if ctx.Err() != nil {
			return d.stopping(ctx)
		}
		return err
	}
	logger.Info("job finished", "job", id, "ok", d.rc.Header().Summary.OK, "failed", d.rc.Header().Summary.Failed)
	return nil
}

// driveAll submits the job to every minion not yet submitted to, then
// polls until every entry is FINISHED.
func (d *driver) driveAll(ctx context.Context) error {
	d.submitAll(ctx, d.open(false))
	return d.recordAndPoll(ctx, func() error {
		return d.rc.Flush(func(r *jobs.Record) error {
			if r.State == status.Running {
				r.State = status.Partial
			}
			return nil
		})
	})
}

// recordAndPoll follows a round of submits: it records them with record
// (retried while the store is busy), then polls until every entry is
// FINISHED. Told to stop (ctx), it leaves the job open for the next
// driver and returns why.
func (d *driver) recordAndPoll(ctx context.Context, record func() error) error {
	if ctx.Err() != nil {
		return d.stopping(ctx)
	}
	if err := whileBusy(ctx, d.logger, d.rc.Header().ID, "record the submits", record); err != nil {
		if ctx.Err() != nil {
			return d.stopping(ctx)
		}
		return err
	}
	d.poll(ctx)
	if ctx.Err() != nil {
		return d.stopping(ctx)
	}
	return nil
}

// driveBatches drives a batched job a batch at a time, as PlanBatch
// decides from the entries: submit a batch, poll it until every entry is
// FINISHED, wait --batch-wait, and so on; once --max-fail is crossed, the
// batches not started end skipped. A cancel or the deadline ends every
// entry not submitted yet. The job stays RUNNING until its last batch is
// submitted, then PARTIAL.
func (d *driver) driveBatches(ctx context.Context) error {
	id := d.rc.Header().ID
	for {
		now := time.Now()
		step := PlanBatch(*d.batch, d.entries, now)
		step.Note(d.batch, now)
		for n, r := range step.Skip {
			d.set(n, r)
		}
		if step.Over {
			d.logger.Info("batches over", "job", id, "done", step.Done, "of", step.Batches, "skipped", len(step.Skip))
			return nil
		}
		switch {
		case d.cancelRequested() || !now.Before(d.deadline()):
			// Every entry not submitted yet, whatever its batch, ends
			// cancelled or timeout (submitAll adopts a synchronous call's
			// minions first, to cancel what they run).
			d.submitAll(ctx, d.open(false))
		case step.Wait > 0:
			if err := d.flushBatch(false); err != nil {
				d.logger.Warn("could not record the batch's end; will retry", "job", id, "err", err)
			}
			d.logger.Info("waiting before the next batch", "job", id, "batch", step.Batch, "of", step.Batches, "wait", step.Wait.Round(time.Millisecond))
			d.pause(ctx, step.Wait)
			if ctx.Err() != nil {
				return d.stopping(ctx)
			}
			continue
		case len(step.Start) > 0:
			d.logger.Info("starting batch", "job", id, "batch", step.Batch, "of", step.Batches, "minions", len(step.Start))
			d.submitAll(ctx, step.Start)
		}
		last := len(d.open(false)) == 0
		if err := d.recordAndPoll(ctx, func() error { return d.flushBatch(last) }); err != nil {
			return err
		}
	}
}

// flushBatch writes the results gathered and the batch plan's progress;
// with submitted (every minion has been submitted to), the job becomes
// PARTIAL.
func (d *driver) flushBatch(submitted bool) error {
	plan := *d.batch
	return d.rc.Flush(func(r *jobs.Record) error {
		r.Batch = &plan
		if submitted && r.State == status.Running {
			r.State = status.Partial
		}
		return nil
	})
}

// pause waits up to wait, at most until the deadline, and less if the job
// is cancelled or ctx ends.
func (d *driver) pause(ctx context.Context, wait time.Duration) {
	end := time.Now().Add(wait)
	if dl := d.deadline(); dl.Before(end) {
		end = dl
	}
	for {
		left := time.Until(end)
		if left <= 0 || d.cancelRequested() {
			return
		}
		t := time.NewTimer(min(left, pauseCheckEvery))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// stopping records what is known when the driver is told to stop (a
// signal, a shutdown) and leaves the job open: the next driver carries it
// on with the same minion jobs.
func (d *driver) stopping(ctx context.Context) error {
	err := d.rc.Flush(nil)
	d.logger.Info("driver stopping; the job stays open for the next driver", "job", d.rc.Header().ID)
	return errors.Join(ctx.Err(), err)
}

// set records an entry if it changed. A Result with no State means no
// change.
func (d *driver) set(name string, r status.Result) {
	if r.State == "" {
		return
	}
	old := d.entries[name]
	if old.State == r.State && old.MinionJobID == r.MinionJobID && r.State != status.Finished && sameQueue(old, r) {
		return
	}
	if r.Batch == 0 {
		r.Batch = old.Batch // an entry keeps its batch
	}
	if r.Via == "" {
		r.Via = old.Via // and the gateway its job was sent through
	}
	d.entries[name] = r
	d.rc.Add(name, r)
	if d.observe != nil && old.State != status.Finished {
		d.observe(name, r)
	}
}

// open returns the minions whose entries are not FINISHED.
func (d *driver) open(submitted bool) []string {
	var out []string
	for _, n := range d.names {
		e := d.entries[n]
		if e.State != status.Finished && (e.MinionJobID != "") == submitted {
			out = append(out, n)
		}
	}
	return out
}

// sameQueue reports whether a and b say the same of a queued minion:
// since when, and the last error.
func sameQueue(a, b status.Result) bool {
	sameTime := (a.QueuedSince == nil) == (b.QueuedSince == nil) && (a.QueuedSince == nil || a.QueuedSince.Equal(*b.QueuedSince))
	sameErr := (a.LastError == nil) == (b.LastError == nil) && (a.LastError == nil || *a.LastError == *b.LastError)
	return sameTime && sameErr
}

// queuedMinions returns the minions whose entries wait for their minion
// to come back (--queue).
func (d *driver) queuedMinions() []string {
	var out []string
	for _, n := range d.names {
		if d.entries[n].Queued() {
			out = append(out, n)
		}
	}
	return out
}

// queue keeps name's entry open for a --queue job whose minion could not
// be reached: RUNNING, queued since first (or since the entry says, if
// it was queued before), with why the last try failed.
func (d *driver) queue(name string, first time.Time, why *status.Error) status.Result {
	since := first.UTC()
	if old := d.entries[name].QueuedSince; old != nil {
		since = *old
	}
	return status.Result{State: status.Running, QueuedSince: &since, LastError: why}
}

// undelivered ends the entry of a minion the job never reached before its
// deadline: unreachable if it was queued, else timeout.
func (d *driver) undelivered(name string) status.Result {
	e := d.entries[name]
	if !e.Queued() {
		if last := d.lastSubmitErr[name]; last != nil {
			if rpc.IsNoGateway(last) {
				// Its gateways stayed down past the deadline: the
				// minion could not be reached (the message names them).
				return Finished(status.KindUnreachable, "job deadline passed before the job reached this minion: %s", last.Message)
			}
			// Say why the last try failed; what ended the entry is
			// the deadline.
			return Finished(status.KindTimeout, "job deadline passed before the job reached this minion; the last try: %s", last.Message)
		}
		return Finished(status.KindTimeout, "job deadline passed before the job reached this minion")
	}
	last := ""
	if e.LastError != nil {
		last = ": " + e.LastError.Error()
	}
	return Finished(status.KindUnreachable, "queued since %s and never came back before the job's deadline (%s)%s",
		e.QueuedSince.Format(time.RFC3339), d.deadline().Format(time.RFC3339), last)
}

func (d *driver) deadline() time.Time {
	if d.rc.Header().Deadline == nil {
		return time.Now().Add(DefaultAsyncTimeout)
	}
	return *d.rc.Header().Deadline
}

// Finished is an entry the overlord ends itself, with an error of kind.
func Finished(kind status.Kind, format string, args ...any) status.Result {
	return status.Result{State: status.Finished, Error: status.Errorf(kind, format, args...)}
}

// submitAll submits the job to the pending minions (not yet submitted
// to), in rounds: a minion whose submit fails on the network is tried again in
// the next round, after a backoff that holds no worker, so minions that
// answer never wait behind ones that do not. After submitAttempts such
// failures the entry ends unreachable, or, in a --queue job, is queued:
// poll probes it from then on. A minion queued before (by an earlier
// driver) gets one try here before it is queued again.
func (d *driver) submitAll(ctx context.Context, pending []string) {
	rec := d.rc.Header()
	backoff := d.t.SubmitBackoff
	failed := map[string]int{}      // network failures, per minion; busy answers do not count
	first := map[string]time.Time{} // when each minion's first try failed
	for _, n := range pending {
		if d.entries[n].Queued() {
			failed[n] = submitAttempts - 1
		}
	}
	for round := 1; len(pending) > 0; round++ {
		switch {
		case ctx.Err() != nil:
			return
		case d.cancelRequested():
			// A synchronous call's minions were sent the call: adopt it
			// (then cancel it), the others never get it.
			var adopt []string
			for _, n := range pending {
				if d.adopts(rec, n) {
					adopt = append(adopt, n)
				} else {
					d.set(n, Finished(status.KindCancelled, "job cancelled before it reached this minion"))
				}
			}
			if pending = adopt; len(pending) == 0 {
				return
			}
		case !time.Now().Before(d.deadline()):
			for _, n := range pending {
				d.set(n, d.undelivered(n))
			}
			return
		}
		var retry []string
		fanout.Run(ctx, pending, d.forks, func(ctx context.Context, name string) submitOutcome {
			return d.submit(ctx, rec, name)
		}, func(name string, out submitOutcome) {
			switch {
			case out.late:
				d.set(name, d.undelivered(name))
			case out.busy:
				retry = append(retry, name)
			case out.failed != nil:
				if d.lastSubmitErr == nil {
					d.lastSubmitErr = map[string]*status.Error{}
				}
				d.lastSubmitErr[name] = out.failed
				failed[name]++
				if _, ok := first[name]; !ok {
					first[name] = time.Now()
				}
				switch {
				case failed[name] < submitAttempts:
					retry = append(retry, name)
				case rec.Queue:
					d.set(name, d.queue(name, first[name], out.failed))
				default:
					r := Finished(out.failed.Kind, "%s", out.failed.Message)
					r.DurationMS = out.took.Milliseconds()
					d.set(name, r)
				}
			default:
				d.set(name, out.r)
			}
		})
		pending = retry
		if len(pending) == 0 {
			return
		}
		d.logger.Debug("submits failed; retrying", "minions", len(pending), "round", round, "backoff", backoff)
		t := time.NewTimer(min(backoff, time.Until(d.deadline())))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, d.t.MaxSubmitBackoff)
	}
}

// submitOutcome is one submit attempt's result: the entry, or why there
// is none yet.
type submitOutcome struct {
	r    status.Result // the entry, unless one of the others is set
	busy bool          // the minion was busy: try again, the try does not count
	late bool          // the deadline passed before the job reached the minion
	// failed is a network failure (unreachable, timeout): try again, or
	// give up after submitAttempts; took is how long the try took.
	failed *status.Error
	took   time.Duration
}

// submit makes one attempt to submit the job to a minion. It runs in a
// fan-out worker: it reads no entry.
func (d *driver) submit(ctx context.Context, rec jobs.Record, name string) submitOutcome {
	if ctx.Err() != nil {
		return submitOutcome{} // stopping: no change
	}
	if d.cancelRequested() && !d.adopts(rec, name) {
		return submitOutcome{r: Finished(status.KindCancelled, "job cancelled before it reached this minion")}
	}
	params := rpc.SubmitParams{
		OriginJobID: rec.ID, Module: rec.Module, Method: rec.Method,
		Args: rec.Args, Positional: rec.Positional,
		TimeoutMS: time.Until(d.deadline()).Milliseconds(),
	}
	if params.TimeoutMS <= 0 {
		return submitOutcome{late: true}
	}
	cctx, cancel := context.WithTimeout(ctx, min(RPCTimeout, time.Until(d.deadline())))
	defer cancel()
	var reply rpc.SubmitReply
	start := time.Now()
	var err error
	cctx, via := rpc.TrackVia(cctx)
	if d.adopts(rec, name) {
		// A synchronous call's: the minion was sent the call, and keeps
		// it as a job if it outlived the call's wait. Never submit it
		// again.
		err = d.client.Call(cctx, name, "Minion.Adopt", rpc.AdoptParams{OriginJobID: rec.ID}, &reply)
	} else {
		err = d.client.Call(cctx, name, "Minion.Submit", params, &reply)
	}
	if err == nil {
		return submitOutcome{r: status.Result{State: status.Running, MinionJobID: reply.JobID, Via: via()}}
	}
	if ctx.Err() != nil {
		return submitOutcome{} // stopping: the next driver submits again (idempotent)
	}
	if errors.Is(err, rpc.ErrBusy) && time.Now().Before(d.deadline()) {
		// The minion turned the call away for now (a storm of jobs):
		// not a failure, and not a sign the minion is gone.
		return submitOutcome{busy: true}
	}
	se := rpc.Classify(cctx, err)
	if se.Kind == status.KindUnreachable || se.Kind == status.KindTimeout {
		return submitOutcome{failed: se, took: time.Since(start)}
	}
	r := Finished(se.Kind, "%s", se.Message)
	r.DurationMS = time.Since(start).Milliseconds()
	return submitOutcome{r: r}
}

// adopts reports whether the driver is to adopt name's part of job rec
// rather than submit it: the job was a synchronous call, and name was
// sent the call (every minion is, unless the call recorded otherwise).
func (d *driver) adopts(rec jobs.Record, name string) bool {
	if rec.Async {
		return false
	}
	_, never := slices.BinarySearch(rec.Unsent, name)
	return !never
}

// cancelRequested reports whether `job cancel` asked for the job to stop,
// reading the store at most every cancelCheckEvery.
func (d *driver) cancelRequested() bool {
	d.cancelMu.Lock()
	defer d.cancelMu.Unlock()
	if !d.cancelled && time.Since(d.cancelAt) >= cancelCheckEvery {
		d.cancelAt = time.Now()
		if hdr, err := d.k.Store.Header(d.rc.Header().ID); err == nil {
			d.cancelled = hdr.CancelRequested
		}
	}
	return d.cancelled
}

// poll asks every minion with an open entry for its job's state until
// every entry is FINISHED or the deadline passes. While the open minions
// fit in --forks, each call is a long poll (the minion answers when its
// job changes); with more, plain polls with backoff, so no minion's news
// waits behind others' long polls. In the same rounds it probes the
// minions queued (--queue) whose probe is due: a submit, which delivers
// the job to a minion that came back. Between probes a queued minion
// holds no worker.
func (d *driver) poll(ctx context.Context) {
	interval := pollFirst
	lastContact := map[string]time.Time{}
	probe := probes{first: d.t.QueueProbeFirst, max: d.t.QueueProbeMax, times: map[string]*probeTimes{}}
	rec := d.rc.Header()
	var cancelSentAt time.Time
	lastLook := false
	for {
		open, queued := d.open(true), d.queuedMinions()
		if len(open)+len(queued) == 0 || ctx.Err() != nil {
			return
		}
		switch {
		case len(queued) == 0:
		case d.cancelRequested():
			for _, n := range queued {
				d.set(n, Finished(status.KindCancelled, "job cancelled before it reached this minion"))
			}
			continue
		case !time.Now().Before(d.deadline()):
			for _, n := range queued {
				d.set(n, d.undelivered(n))
			}
			continue
		}
		now := time.Now()
		due := probe.due(queued, now)
		wait := PollWait
		if len(open)+len(due) > d.forks {
			wait = 0
		}
		if !time.Now().Before(d.deadline()) {
			if lastLook {
				d.expire(ctx, open)
				return
			}
			// Ask once more before calling anything late: a driver
			// restarted after the deadline must not call jobs that
			// finished in time timed out.
			lastLook, wait = true, 0
		} else if wait > 0 {
			wait = min(wait, time.Until(d.deadline()))
		}
		if d.cancelRequested() && cancelSentAt.IsZero() {
			d.cancelAll(ctx, open)
			cancelSentAt = time.Now()
		}
		// Workers read this snapshot; only the emit side writes entries.
		jobIDs := make(map[string]string, len(open))
		for _, n := range open {
			jobIDs[n] = d.entries[n].MinionJobID
		}
		failures := 0
		fanout.Run(ctx, append(open, due...), d.forks, func(ctx context.Context, name string) roundAnswer {
			if id, ok := jobIDs[name]; ok {
				return roundAnswer{poll: d.status(ctx, name, id, wait)}
			}
			out := d.submit(ctx, rec, name)
			return roundAnswer{probe: &out}
		}, func(name string, a roundAnswer) {
			if a.probe != nil {
				if !d.probed(name, *a.probe, probe, now) {
					failures++
				}
				return
			}
			pr := a.poll
			if pr.Err != nil {
				if d.lastPollErr == nil {
					d.lastPollErr = map[string]*status.Error{}
				}
				d.lastPollErr[name] = pr.Err
				failures++
				since, ok := lastContact[name]
				if !ok {
					since = now
					lastContact[name] = now
				}
				// A --queue job waits for the minion until the deadline.
				if !rec.Queue && now.Sub(since) >= d.t.UnreachableAfter {
					d.set(name, d.ended(name, Finished(pr.Err.Kind, "out of reach for %s: %s", d.t.UnreachableAfter, pr.Err.Message)))
				}
				return
			}
			lastContact[name] = now
			delete(d.lastPollErr, name)
			d.set(name, pr.R)
		})
		if !cancelSentAt.IsZero() && time.Since(cancelSentAt) > cancelWait {
			for _, n := range d.open(true) {
				d.set(n, d.ended(n, Finished(status.KindCancelled, "job cancelled; the minion did not confirm")))
			}
		}
		if err := d.rc.Flush(nil); err != nil {
			d.logger.Warn("could not record results; will retry", "job", d.rc.Header().ID, "err", err)
		}
		if lastLook {
			continue
		}
		if wait > 0 && failures == 0 && len(open) > 0 && time.Since(now) >= pollFirst {
			interval = pollFirst // the minions held the calls: no need to wait
			continue
		}
		sleep := min(interval, time.Until(d.deadline())+10*time.Millisecond)
		if next := probe.next(d.queuedMinions()); !next.IsZero() {
			sleep = min(sleep, time.Until(next))
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		interval = min(interval*3/2, pollMax)
	}
}

// roundAnswer is one minion's answer in a round of poll: to a status
// poll, or to a queued minion's probe.
type roundAnswer struct {
	poll  PollResult
	probe *submitOutcome
}

// probed records the outcome of a queued minion's probe and reports
// whether the minion answered: the job delivered (or refused for good),
// or the minion still out of reach (or busy), probed again later.
func (d *driver) probed(name string, out submitOutcome, p probes, now time.Time) bool {
	switch {
	case out.late:
		d.set(name, d.undelivered(name))
	case out.busy:
		p.again(name, now)
	case out.failed != nil:
		d.set(name, d.queue(name, now, out.failed))
		p.again(name, now)
		return false
	default:
		if out.r.State != "" {
			d.logger.Info("queued minion is back", "job", d.rc.Header().ID, "minion", name, "queued_since", d.entries[name].QueuedSince)
		}
		d.set(name, out.r)
	}
	return true
}

// probes schedules the probes of queued minions: a minion's first is due
// first after poll first sees it queued, the next ones at delays doubled
// up to max, each with jitter.
type probes struct {
	first, max time.Duration
	times      map[string]*probeTimes
}

type probeTimes struct {
	next    time.Time
	backoff time.Duration
}

// due returns those of queued whose probe is due at now, scheduling
// the first probe of those seen for the first time.
func (p probes) due(queued []string, now time.Time) []string {
	var out []string
	for _, n := range queued {
		t, ok := p.times[n]
		if !ok {
			p.times[n] = &probeTimes{next: now.Add(jitter(p.first)), backoff: p.first}
			continue
		}
		if !now.Before(t.next) {
			out = append(out, n)
		}
	}
	return out
}

// again schedules name's next probe after one that found it still out
// of reach.
func (p probes) again(name string, now time.Time) {
	t, ok := p.times[name]
	if !ok {
		t = &probeTimes{backoff: p.first / 2}
		p.times[name] = t
	}
	t.backoff = min(t.backoff*2, p.max)
	t.next = now.Add(jitter(t.backoff))
}

// next returns when the earliest probe of queued is due (zero if none
// is scheduled).
func (p probes) next(queued []string) time.Time {
	var first time.Time
	for _, n := range queued {
		if t, ok := p.times[n]; ok && (first.IsZero() || t.next.Before(first)) {
			first = t.next
		}
	}
	return first
}

// PollResult is a minion's answer about one of its jobs: the job's
// entry (the result once it is FINISHED), or why there is none.
type PollResult struct {
	R   status.Result
	Err *status.Error
}

// status asks a minion for one job's state, holding the call up to wait
// for a change (0: answer at once).
func (d *driver) status(ctx context.Context, name, jobID string, wait time.Duration) PollResult {
	if d.poller != nil {
		return d.poller.Status(ctx, name, jobID, wait)
	}
	return MinionStatus(ctx, d.client, name, jobID, wait)
}

// MinionStatus asks minion name for its job jobID's state with
// Minion.Status, as an entry: the result once the job is FINISHED.
func MinionStatus(ctx context.Context, client Caller, name, jobID string, wait time.Duration) PollResult {
	cctx, cancel := context.WithTimeout(ctx, RPCTimeout)
	defer cancel()
	var reply rpc.StatusReply
	params := rpc.StatusParams{JobIDs: []string{jobID}, MaxOutput: -1, WaitMS: wait.Milliseconds()}
	err := client.Call(cctx, name, "Minion.Status", params, &reply)
	if err == nil && len(reply.Jobs) != 1 {
		err = status.Errorf(status.KindInternal, "Minion.Status answered %d jobs for 1", len(reply.Jobs))
	}
	if err != nil {
		return PollResult{Err: rpc.Classify(cctx, err)}
	}
	return PollResult{R: JobResult(reply.Jobs[0])}
}

// JobResult is the entry a minion job's status makes.
func JobResult(js rpc.JobStatus) status.Result {
	r := status.Result{State: js.State, MinionJobID: js.JobID}
	if js.State == status.Finished {
		r.OK, r.Result, r.Error, r.DurationMS = js.OK, js.Result, js.Error, js.DurationMS
	}
	return r
}

// cancelAll asks every open minion job to stop.
func (d *driver) cancelAll(ctx context.Context, open []string) {
	CancelMinionJobs(ctx, d.client, d.forks, d.entries, open, status.KindCancelled, d.logger)
}

// CancelMinionJobs sends Minion.Cancel for the named entries' minion jobs.
// kind is why: cancelled, or timeout for a job past its deadline.
func CancelMinionJobs(ctx context.Context, client Caller, forks int, entries map[string]status.Result, names []string, kind status.Kind, logger *slog.Logger) {
	fanout.Run(ctx, names, forks, func(ctx context.Context, name string) error {
		cctx, cancel := context.WithTimeout(ctx, RPCTimeout)
		defer cancel()
		var reply rpc.CancelReply
		return client.Call(cctx, name, "Minion.Cancel", rpc.CancelParams{JobID: entries[name].MinionJobID, Reason: kind}, &reply)
	}, func(name string, err error) {
		if err != nil {
			logger.Warn("cancel failed", "minion", name, "err", err)
		}
	})
}

// expire ends a job past its deadline: open minion jobs are cancelled and
// their entries FINISHED with kind timeout, or unreachable if their
// gateways were down at the last poll.
func (d *driver) expire(ctx context.Context, open []string) {
	CancelMinionJobs(ctx, d.client, d.forks, d.entries, open, status.KindTimeout, d.logger)
	for _, n := range open {
		if last := d.lastPollErr[n]; rpc.IsNoGateway(last) {
			// Its gateways went down and stayed down past the deadline.
			d.set(n, d.ended(n, Finished(status.KindUnreachable, "job deadline passed (%s) before this minion finished: %s", d.deadline().Format(time.RFC3339), last.Message)))
			continue
		}
		d.set(n, d.ended(n, Finished(status.KindTimeout, "job deadline passed (%s) before this minion finished", d.deadline().Format(time.RFC3339))))
	}
}

// ended keeps the minion job ID on an entry the driver finishes itself,
// so that the minion's own record of the job can still be found.
func (d *driver) ended(name string, r status.Result) status.Result {
	r.MinionJobID = d.entries[name].MinionJobID
	return r
}

// errFenced is what a minion call made after the job's lock was lost
// returns instead of calling: the driver takes it as being told to stop.
var errFenced = fmt.Errorf("%w: %w", context.Canceled, ErrLockLost)

// fencedCaller calls minions only while the job's lock is held.
type fencedCaller struct {
	c    Caller
	lost <-chan struct{}
}

func (f fencedCaller) Call(ctx context.Context, minion, method string, params, reply any) error {
	if isLost(f.lost) {
		return errFenced
	}
	return f.c.Call(ctx, minion, method, params, reply)
}

// fencedPoller polls minions only while the job's lock is held.
type fencedPoller struct {
	p    Poller
	lost <-chan struct{}
}

func (f fencedPoller) Status(ctx context.Context, name, jobID string, wait time.Duration) PollResult {
	if isLost(f.lost) {
		return PollResult{Err: status.Errorf(status.KindCancelled, "not asked: %v", ErrLockLost)}
	}
	return f.p.Status(ctx, name, jobID, wait)
}
