package overlord

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/job"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/metrics"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
	"github.com/overlordhq/overlord/target"
)

// Defaults of a call.
const (
	DefaultCallTimeout    = 30 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	// callGrace is how much longer than the method's own timeout the
	// overlord waits for an answer, so that a minion that enforces the
	// timeout itself reports it with whatever output there was.
	callGrace = 2 * time.Second
)

var (
	// ErrNoMatch is returned when a target matches no minion.
	ErrNoMatch = errors.New("target matched no minion")

	// ErrNotRecorded is returned with a job whose call ran but whose
	// results could not all be written to overlord.db; the job is
	// settled as lost by the next `job status`.
	ErrNotRecorded = errors.New("the call ran but its results were not all recorded")
)

// CallSpec is what to call, where and how.
type CallSpec struct {
	Target string
	Module string
	Method string
	Words  []string // the method's arguments as typed on the command line
	// Args, if set, are the method's arguments by name, as JSON gave
	// them (overlord transmit), in place of Words.
	Args map[string]any
	// Stdin, if set, is read for the method's stdin parameter when the
	// words do not give it (standard input piped into the overlord).
	Stdin io.Reader
	// Where narrows the target by the minions' cached facts
	// ("os=debian", "memory_bytes>=8e9"); every condition must hold.
	Where []string

	Forks          int
	Timeout        time.Duration // per minion call
	ConnectTimeout time.Duration

	// Batch runs the target a batch of minions at a time (--batch).
	Batch BatchSpec
	// OnBatch, if set, is called as batch k of n starts in a
	// synchronous run of a batched job (call, script, cp, fetch), on the
	// goroutine that hands results to onResult, with how many minions
	// the batches started so far hold: a progress display's "batch k/n"
	// and its count of minions running.
	OnBatch func(k, n, started int)
}

// Prepared is a call with its target resolved and arguments bound, ready
// to run or to submit.
type Prepared struct {
	JobID      string // the ID the job will have, known before anything runs
	Spec       CallSpec
	Minions    []jobs.Minion
	Args       map[string]any
	Positional []any
	Notes      []Note // minions --where left out untested: their facts are not known
	// SubmittedBy, if set, is recorded with the job: who asked for it
	// (the HTTP API's caller).
	SubmittedBy string
}

// Names returns the names of the minions to call.
func (p *Prepared) Names() []string {
	names := make([]string, len(p.Minions))
	for i, m := range p.Minions {
		names[i] = m.Name
	}
	return names
}

// prepare resolves the target and parses the arguments. For a method the
// overlord knows (a built-in, or a plugin whose description is cached)
// the arguments are typed, and a built-in's bound and checked here, so a
// mistake is reported before anything is sent; other methods are bound
// by each minion. Prepare then applies --where (targets.go).
func (o *Overlord) prepare(spec CallSpec) (*Prepared, error) {
	if spec.Module == "" || spec.Method == "" {
		return nil, fmt.Errorf("want MODULE.METHOD, got %q", spec.Module+"."+spec.Method)
	}
	minions, err := o.resolve(spec.Target, spec.Where)
	if err != nil {
		return nil, err
	}
	id, err := jobs.NewID()
	if err != nil {
		return nil, err
	}
	p := &Prepared{JobID: id, Spec: spec, Minions: minions}
	meth, bound, err := o.method(spec, p.Minions)
	if err != nil {
		return nil, err
	}
	named, positional, err := modules.ParseCommandLine(spec.Module+"."+spec.Method, meth, spec.Words)
	if err != nil {
		return nil, err
	}
	if spec.Args != nil {
		if len(spec.Words) > 0 {
			return nil, fmt.Errorf("arguments given both as words and by name")
		}
		named = maps.Clone(spec.Args)
	}
	if named, err = withStdin(spec.Stdin, meth, named, positional); err != nil {
		return nil, err
	}
	if !bound {
		p.Args, p.Positional = named, positional
	} else if p.Args, err = meth.Bind(named, positional); err != nil {
		return nil, err
	}
	if err := checkSize(p); err != nil {
		return nil, err
	}
	return p, nil
}

// Client returns an RPC client with the overlord's identity that reaches
// the given minions by name.
func (o *Overlord) Client(minions []jobs.Minion, forks int, connectTimeout time.Duration) (*rpc.Client, error) {
	id, err := o.Identity()
	if err != nil {
		return nil, err
	}
	return o.clientAs(id, minions, forks, connectTimeout)
}

// clientAs is Client with the identity id, already loaded. With the
// state directory's own identity, calls go through the service when this
// process uses one (UseService), or, in the service, on its pool.
func (o *Overlord) clientAs(id *certs.Bundle, minions []jobs.Minion, forks int, connectTimeout time.Duration) (*rpc.Client, error) {
	if o.pool != nil && o.IdentityFile == o.pool.identity {
		o.pool.learn(minions, false)
		return o.pool.client.Shared(), nil
	}
	tlsID, err := id.TLS()
	if err != nil {
		return nil, err
	}
	crl, err := o.CRL(id.CA)
	if err != nil && !errors.Is(err, jobs.ErrNoStore) {
		// Not fatal: revoked minions are out of the registry anyway.
		o.Logger.Warn("the revocation list in overlord.db is unusable; not checking or sending it", "err", err)
	}
	if err := certs.CheckRevoked(crl, id.Cert); err != nil {
		return nil, fmt.Errorf("identity: %w; use another (--identity FILE)", err)
	}
	byName := make(map[string]jobs.Minion, len(minions))
	for _, m := range minions {
		byName[m.Name] = m
	}
	pinned := func(name string) (string, bool) { m, ok := byName[name]; return m.Fingerprint, ok }
	cfg := rpc.ClientConfig{
		TLS:            certs.Pin(certs.RefuseRevoked(certs.ClientConfig(tlsID, id.Pool()), func() *certs.CRL { return crl }), pinned),
		Resolve:        func(name string) (string, bool) { m, ok := byName[name]; return m.Addr, ok },
		ConnectTimeout: connectTimeout,
		MaxIdleConns:   forks,
	}
	cfg.View = func(name string) (string, string, bool) { m, ok := byName[name]; return m.Addr, m.Fingerprint, ok }
	if route, err := o.router(minions); err != nil {
		return nil, err
	} else if route != nil {
		cfg.Route = route
		cfg.GatewayTLS = certs.RefuseRevoked(certs.GatewayClientConfig(tlsID, id.Pool()), func() *certs.CRL { return crl })
	}
	if o.service != nil && o.IdentityFile == "" {
		cfg.Service = o.service.dial
	}
	if crl != nil {
		pu := newCRLPusher(crl, o.Logger)
		cfg.AfterCall, cfg.AfterGateway = pu.afterCall, pu.afterGateway
	}
	return rpc.NewClient(cfg), nil
}

// Call runs a prepared call synchronously: it records the job, fans the
// call out and hands each minion's result to onResult as it arrives,
// writing results to overlord.db in batches. It returns the job.
//
// The call's --timeout is how long it waits, not a limit on the method:
// minions still running when it passes, or when ctx is cancelled (Ctrl-C),
// carry on, and so does the job, handed to a detached driver as an async
// job is. The job returned is then not FINISHED: its open entries are
// RUNNING, those the minions kept with their minion_job_id. The method's
// own limit is the job's deadline, DefaultAsyncTimeout after the start.
//
// A failure to record results does not stop the run; it is returned with
// the job.
func (o *Overlord) Call(ctx context.Context, p *Prepared, onResult func(name string, r status.Result)) (status.Job, error) {
	spec := p.defaults()
	waitUntil := time.Now().Add(spec.Timeout)
	base := rpc.CallParams{
		Module: spec.Module, Method: spec.Method, Args: p.Args, Positional: p.Positional,
		OriginJobID: p.JobID, JobTimeoutMS: DefaultAsyncTimeout.Milliseconds(),
	}
	h := &handover{deadline: time.Now().Add(DefaultAsyncTimeout), waitUntil: waitUntil, params: base, connect: spec.ConnectTimeout}
	return o.run(ctx, p, callStep(h), onResult, h)
}

// callStep returns what a synchronous call does with one minion: send it
// Minion.Call for at most the rest of the wait, and turn the outcome into
// its entry, RUNNING if the minion keeps the call past the wait (or the
// caller stopped waiting). The overlord service runs the same step when it
// fans a call out for a CLI (ServiceConn.fanOut).
func callStep(h *handover) func(context.Context, *rpc.Client, jobs.Minion) status.Result {
	base, waitUntil := h.params, h.waitUntil
	return func(ctx context.Context, client *rpc.Client, m jobs.Minion) status.Result {
		wait := time.Until(waitUntil)
		if ctx.Err() != nil || wait <= 0 {
			return h.unsent(m.Name)
		}
		params := base
		params.TimeoutMS = max(wait.Milliseconds(), 1)
		cctx, cancel := context.WithTimeout(ctx, wait+callGrace)
		defer cancel()
		start := time.Now()
		var reply rpc.CallReply
		cctx, via := rpc.TrackVia(cctx)
		err := client.Call(cctx, m.Name, "Minion.Call", params, &reply)
		if err == nil && reply.Detached {
			return status.Result{State: status.Running, MinionJobID: reply.JobID, Via: via()}
		}
		if err != nil && !errors.Is(err, rpc.ErrRemote) &&
			(ctx.Err() != nil || errors.Is(err, rpc.ErrGatewayLost) || rpc.Classify(cctx, err).Kind == status.KindTimeout) {
			// Ctrl-C cut the call short, or no answer came by the end of
			// the wait and its grace (a minion too busy, or hung, to say
			// "detached" in time): the minion may be running the call,
			// and keeps it if so. The driver adopts it: its result is
			// recorded, or the minion says it never got the call (lost);
			// a minion that stays silent ends timeout there.
			// A gateway lost after the call was sent to it: the same.
			return status.Result{State: status.Running, Via: via()}
		}
		r := callResult(cctx, reply, err, time.Since(start))
		r.Via = via()
		return r
	}
}

// instrumented returns step reporting each minion's result and how long
// its step took to mm, the service's metrics of the call's method; with
// none (mm nil: not in the service), step itself.
func instrumented(mm *metrics.Method, step func(context.Context, *rpc.Client, jobs.Minion) status.Result) func(context.Context, *rpc.Client, jobs.Minion) status.Result {
	if mm == nil {
		return step
	}
	return func(ctx context.Context, c *rpc.Client, m jobs.Minion) status.Result {
		start := time.Now()
		r := step(ctx, c, m)
		mm.MinionCall(m.Name, r, time.Since(start))
		return r
	}
}

// handover is what a synchronous call that stops waiting hands to the
// driver that carries it on.
type handover struct {
	deadline  time.Time // the job's, and the limit of the calls the minions keep
	waitUntil time.Time // when the call stops waiting (--timeout); a pause between batches ends there too
	params    rpc.CallParams
	connect   time.Duration // the connect timeout
	mu        sync.Mutex
	never     []string // the minions it did not send the call to
}

// unsent notes that the call was not sent to name.
func (h *handover) unsent(name string) status.Result {
	h.mu.Lock()
	h.never = append(h.never, name)
	h.mu.Unlock()
	return status.Result{State: status.Running}
}

// defaults returns the call's spec with its defaults filled in.
func (p *Prepared) defaults() CallSpec {
	spec := p.Spec
	if spec.Timeout <= 0 {
		spec.Timeout = DefaultCallTimeout
	}
	if spec.ConnectTimeout <= 0 {
		spec.ConnectTimeout = DefaultConnectTimeout
	}
	if spec.Forks <= 0 {
		spec.Forks = fanout.DefaultForks
	}
	return spec
}

// run records a synchronous job and runs one step per minion, at most
// --forks at once, recording each result in batches and handing each
// finished one to onResult as it arrives. Call, Copy and Fetch are run
// with their step. With a handover (Call), entries a step leaves open are
// carried on by a detached driver, and the job is returned open.
func (o *Overlord) run(ctx context.Context, p *Prepared, step func(context.Context, *rpc.Client, jobs.Minion) status.Result, onResult func(string, status.Result), h *handover) (status.Job, error) {
	spec := p.defaults()
	batch, err := p.batchPlan()
	if err != nil {
		return status.Job{}, err
	}
	id, err := o.Identity()
	if err != nil {
		return status.Job{}, err
	}
	client, err := o.clientAs(id, p.Minions, spec.Forks, spec.ConnectTimeout)
	if err != nil {
		return status.Job{}, err
	}
	defer client.Close()

	rec := &jobs.Record{
		ID: p.JobID, Target: spec.Target, Module: spec.Module, Method: spec.Method,
		Args: p.Args, Positional: p.Positional,
		TimeoutMS: spec.Timeout.Milliseconds(), Forks: spec.Forks, Batch: batch,
		SubmittedBy: p.SubmittedBy,
	}
	if h != nil {
		// What a driver needs to carry the job on, should it come to that
		// (this process stops waiting, or dies).
		if rec.Identity, err = o.identityPath(); err != nil {
			return status.Job{}, err
		}
		deadline := h.deadline.UTC()
		rec.Caller, rec.Deadline = id.Cert.Subject.CommonName, &deadline
	}
	names := p.Names()
	// While this call runs it holds the job's driver lock, so that if it
	// dies, `job status` can tell and carry the job on (see EnsureDriver).
	lock, _, err := o.Jobs.Lock(rec.ID)
	if err != nil {
		return status.Job{}, err
	}
	handedOver := false
	defer func() {
		lock.Close()
		if !handedOver {
			o.Jobs.RemoveFiles(rec.ID)
		}
	}()
	// An etcd lock, lost (cut off from etcd): another replica may carry
	// the job on; this call stops as at a Ctrl-C, and writes nothing more
	// (the Recorder below).
	ctx, cancelLost := job.UntilLost(ctx, lock, func() {
		o.Logger.Error("the call's job lock was lost (cut off from etcd): stopping the call", "job", rec.ID)
	})
	defer cancelLost()
	if batch != nil && h != nil {
		// Until its batch starts, a minion has not been sent the call: a
		// driver that carries the job on after this process died submits
		// to it rather than adopting a call it never got (runBatches
		// takes each batch out before sending it).
		for n, k := range jobs.BatchNumbers(names, batch.Size) {
			if k > 1 {
				rec.Unsent = append(rec.Unsent, n)
			}
		}
		slices.Sort(rec.Unsent)
	}
	if err := o.Jobs.Create(rec, names); err != nil {
		return status.Job{}, err
	}
	// In the service (an API's call), its metrics count the call; a CLI
	// process has none, and a call it sends through the service is
	// counted there (Service.call).
	if mm := o.metrics.Method(spec.Module, spec.Method); mm != nil {
		step = instrumented(mm, step)
		defer func(start time.Time) { mm.CallDone(time.Since(start)) }(time.Now())
	}

	entries := make(map[string]status.Result, len(names))
	rc := job.NewRecorder(o.Store, *rec)
	rc.StopOn(lock.Lost())
	defer rc.Close()
	open := 0
	var batchOf map[string]int // nil when not batched
	if batch != nil {
		batchOf = jobs.BatchNumbers(names, batch.Size)
		for n, k := range batchOf {
			entries[n] = status.Result{State: status.Running, Batch: k}
		}
	}
	got := func(m jobs.Minion, r status.Result) {
		r.Batch = batchOf[m.Name]
		entries[m.Name] = r
		switch {
		case r.State != status.Finished:
			open++
			o.Logger.Debug("minion still running", "job", rec.ID, "minion", m.Name, "minion_job", r.MinionJobID)
		case r.Error != nil:
			o.Logger.Debug("minion failed", "job", rec.ID, "minion", m.Name, "kind", r.Error.Kind, "err", r.Error.Message, "ms", r.DurationMS)
		default:
			o.Logger.Debug("minion answered", "job", rec.ID, "minion", m.Name, "ms", r.DurationMS)
		}
		if onResult != nil && r.State == status.Finished {
			onResult(m.Name, r)
		}
		rc.Add(m.Name, r)
	}
	runAll := func(minions []jobs.Minion) {
		if h != nil && o.service != nil && o.IdentityFile == "" {
			// A call through the service: the service fans it out on
			// its warm connections and streams the results back.
			if o.service.fanOut(ctx, rec.ID, minions, spec.Forks, h, got) {
				return
			}
			// Turned down, or gone: the call goes on without the
			// service, as it would have had none answered.
			o.service = nil
			direct, err := o.clientAs(id, p.Minions, spec.Forks, spec.ConnectTimeout)
			if err != nil {
				for _, m := range minions {
					got(m, status.Result{State: status.Finished, Error: status.Errorf(status.KindInternal, "%v", err)})
				}
				return
			}
			client.Close()
			client = direct
		}
		one := func(ctx context.Context, m jobs.Minion) status.Result { return step(ctx, client, m) }
		if h != nil {
			// Minions behind gateways get the call in bundles.
			fanOutCall(ctx, client, rec.ID, h, minions, spec.Forks, one, got)
			return
		}
		fanout.Run(ctx, minions, spec.Forks, one, got)
	}
	var later []string
	if batch == nil {
		runAll(p.Minions)
	} else {
		var stopAt time.Time
		if h != nil {
			stopAt = h.waitUntil
		}
		if later = o.runBatches(ctx, p, rc, entries, runAll, got, stopAt); len(later) > 0 && h != nil {
			// The call stopped waiting during a batch, or the pause
			// before one: the driver submits the batches not started.
			h.mu.Lock()
			h.never = append(h.never, later...)
			h.mu.Unlock()
		}
	}
	if (open > 0 || len(later) > 0) && h != nil {
		handedOver = true
		return o.handOver(rc, entries, h, lock)
	}
	storeErr := rc.Finish()
	out := rc.Header().Status(entries)
	if storeErr != nil {
		// The results were not all recorded; report the job as run.
		now := time.Now().UTC()
		out.State, out.FinishedAt = status.Finished, &now
		out.Summary = status.Summary{}
		for _, r := range entries {
			out.Summary.Add(r)
		}
		o.Logger.Warn("could not record results", "job", rec.ID, "err", storeErr)
		return out, fmt.Errorf("%w: job %s: %v", ErrNotRecorded, rec.ID, storeErr)
	}
	return out, nil
}

// handOver records what a synchronous call that stopped waiting leaves
// open and starts the driver that carries it on, handing it the job's
// lock. The job returned is RUNNING.
func (o *Overlord) handOver(rc *job.Recorder, entries map[string]status.Result, h *handover, lock job.Lock) (status.Job, error) {
	h.mu.Lock()
	never := slices.Clone(h.never)
	h.mu.Unlock()
	storeErr := rc.Flush(func(r *jobs.Record) error {
		// With those of the batches not started, recorded already.
		r.Unsent = slices.Compact(slices.Sorted(slices.Values(append(never, r.Unsent...))))
		return nil
	})
	rc.Close()
	out := rc.Header().Status(entries)
	if storeErr != nil {
		// The driver would not know which minions were never called, and
		// adopts them all: those end lost, none runs twice.
		o.Logger.Warn("could not record the job's open entries", "job", out.JobID, "err", storeErr)
	}
	lock.Close()
	if _, err := o.StartDriver(rc.Header()); err != nil {
		return out, fmt.Errorf("job %s goes on on the minions, but its driver did not start (run 'overlord job status %s' to retry): %w", out.JobID, out.JobID, err)
	}
	return out, nil
}

// callResult turns the outcome of one Minion.Call into the minion's entry.
func callResult(ctx context.Context, reply rpc.CallReply, err error, took time.Duration) status.Result {
	r := status.Result{State: status.Finished, DurationMS: took.Milliseconds()}
	if err == nil {
		r.OK, r.Result = true, reply.Result
		return r
	}
	var re *rpc.ResultError
	if errors.As(err, &re) {
		r.Result = re.Result
	}
	r.Error = rpc.Classify(ctx, err)
	return r
}

// where keeps the names whose cached facts satisfy every condition.
func where(names []string, byName map[string]jobs.Minion, conds []string) ([]string, error) {
	cs := make([]target.Cond, len(conds))
	for i, c := range conds {
		var err error
		if cs[i], err = target.ParseWhere(c); err != nil {
			return nil, err
		}
	}
	var out []string
	for _, n := range names {
		ok := true
		for _, c := range cs {
			if !c.Match(byName[n].Facts) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, n)
		}
	}
	return out, nil
}
