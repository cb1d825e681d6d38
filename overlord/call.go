package overlord

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/builtin"
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
	// How often results are written to overlord.db during a run: after
	// flushEvery results or flushInterval, whichever comes first.
	flushEvery    = 1024
	flushInterval = 250 * time.Millisecond
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
	// Where narrows the target by the minions' cached facts
	// ("os=debian", "memory_bytes>=8e9"); every condition must hold.
	Where []string

	Forks          int
	Timeout        time.Duration // per minion call
	ConnectTimeout time.Duration
}

// Prepared is a call with its target resolved and arguments bound, ready
// to run or to submit.
type Prepared struct {
	JobID      string // the ID the job will have, known before anything runs
	Spec       CallSpec
	Minions    []jobs.Minion
	Args       map[string]any
	Positional []any
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
// overlord knows (a built-in) the arguments are bound and checked here, so
// a mistake is reported before anything is sent; other methods are bound
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
	meth, lookupErr := builtin.Registry().Lookup(spec.Module, spec.Method)
	if lookupErr != nil {
		// A name the overlord does not know is sent (a plugin, a newer
		// minion's method), unless it is a misspelling of one it knows.
		if want, ok := builtin.Registry().Typo(spec.Module, spec.Method); ok {
			return nil, status.Errorf(status.KindBadArgs, "did you mean %s?", want)
		}
		meth = nil
	}
	if err := modules.CheckCommandLine(meth, spec.Words); err != nil {
		return nil, err
	}
	named, positional := modules.ParseCommandLine(meth, spec.Words)
	if meth == nil {
		p.Args, p.Positional = named, positional
		return p, nil
	}
	args, err := meth.Bind(named, positional)
	if err != nil {
		return nil, err
	}
	p.Args = args
	return p, nil
}

// Client returns an RPC client with the overlord's identity that reaches
// the given minions by name.
func (o *Overlord) Client(minions []jobs.Minion, forks int, connectTimeout time.Duration) (*rpc.Client, error) {
	id, err := o.Identity()
	if err != nil {
		return nil, err
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
	if crl != nil {
		cfg.AfterCall = newCRLPusher(crl, o.Logger).afterCall
	}
	return rpc.NewClient(cfg), nil
}

// Call runs a prepared call synchronously: it records the job, fans the
// call out and hands each minion's result to onResult as it arrives,
// writing results to overlord.db in batches. It returns the finished job.
// A failure to record results does not stop the run; it is returned with
// the job.
func (o *Overlord) Call(ctx context.Context, p *Prepared, onResult func(name string, r status.Result)) (status.Job, error) {
	spec := p.defaults()
	params := rpc.CallParams{Module: spec.Module, Method: spec.Method, Args: p.Args, Positional: p.Positional, TimeoutMS: spec.Timeout.Milliseconds()}
	return o.run(ctx, p, func(ctx context.Context, client *rpc.Client, m jobs.Minion) status.Result {
		ctx, cancel := context.WithTimeout(ctx, spec.Timeout+callGrace)
		defer cancel()
		start := time.Now()
		var reply rpc.CallReply
		err := client.Call(ctx, m.Name, "Minion.Call", params, &reply)
		return callResult(ctx, reply, err, time.Since(start))
	}, onResult)
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
// --forks at once, recording each result in batches and handing it to
// onResult as it arrives. Call, Copy and Fetch are run with their step.
func (o *Overlord) run(ctx context.Context, p *Prepared, step func(context.Context, *rpc.Client, jobs.Minion) status.Result, onResult func(string, status.Result)) (status.Job, error) {
	spec := p.defaults()
	client, err := o.Client(p.Minions, spec.Forks, spec.ConnectTimeout)
	if err != nil {
		return status.Job{}, err
	}
	defer client.Close()

	rec := &jobs.Record{
		ID: p.JobID, Target: spec.Target, Module: spec.Module, Method: spec.Method,
		Args: p.Args, Positional: p.Positional,
		TimeoutMS: spec.Timeout.Milliseconds(), Forks: spec.Forks,
	}
	names := p.Names()
	// While this call runs it holds the job's driver lock, so that if it
	// dies, `job status` can tell and settle the job (see EnsureDriver).
	lock, _, err := o.lockDriver(rec.ID)
	if err != nil {
		return status.Job{}, err
	}
	defer func() {
		lock.Close()
		o.removeDriverFiles(rec.ID)
	}()
	if err := o.Store.CreateJob(rec, names); err != nil {
		return status.Job{}, err
	}

	entries := make(map[string]status.Result, len(names))
	rc := newRecorder(o.Store, *rec)
	defer rc.close()
	fanout.Run(ctx, p.Minions, spec.Forks, func(ctx context.Context, m jobs.Minion) status.Result {
		return step(ctx, client, m)
	}, func(m jobs.Minion, r status.Result) {
		entries[m.Name] = r
		if r.Error != nil {
			o.Logger.Debug("minion failed", "job", rec.ID, "minion", m.Name, "kind", r.Error.Kind, "err", r.Error.Message, "ms", r.DurationMS)
		} else {
			o.Logger.Debug("minion answered", "job", rec.ID, "minion", m.Name, "ms", r.DurationMS)
		}
		if onResult != nil {
			onResult(m.Name, r)
		}
		rc.add(m.Name, r)
	})
	storeErr := rc.finish()
	job := rc.header().Status(entries)
	if storeErr != nil {
		// The results were not all recorded; report the job as run.
		now := time.Now().UTC()
		job.State, job.FinishedAt = status.Finished, &now
		job.Summary = status.Summary{}
		for _, r := range entries {
			job.Summary.Add(r)
		}
		o.Logger.Warn("could not record results", "job", rec.ID, "err", storeErr)
		return job, fmt.Errorf("%w: job %s: %v", ErrNotRecorded, rec.ID, storeErr)
	}
	return job, nil
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
