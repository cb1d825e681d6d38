package overlord

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/modules/builtin"
	"github.com/overlordhq/overlord/status"
	"github.com/overlordhq/overlord/target"
)

// Selection is a target expression and --where conditions: which
// minions a command is for.
type Selection struct {
	Target string
	Where  []string
	// FetchFacts makes Select fetch the facts of the minions the target
	// matches that have none cached (facts.all, recorded as a job like
	// 'overlord minion facts') before it applies Where. Without it such
	// minions are left out, each with a note.
	FetchFacts bool
	// Forks, Timeout and ConnectTimeout bound that fetch (the call
	// defaults if zero).
	Forks          int
	Timeout        time.Duration
	ConnectTimeout time.Duration
}

// Note says why a minion the target matches was left out by --where
// without being tested: its facts are not known.
type Note struct {
	Minion string
	Reason string
}

func (n Note) String() string {
	return fmt.Sprintf("%s: left out by --where: %s", n.Minion, n.Reason)
}

// Prepare resolves the target, parses the arguments (see prepare) and
// then narrows the minions by --where, fetching the facts of those that
// have none cached first: a bad argument is reported before anything is
// fetched. The minions whose facts could not be fetched are left out,
// each with a note in p.Notes (and a debug log line); when that leaves
// no minion (ErrNoMatch), the Prepared returned with the error has only
// the notes, which say why.
func (o *Overlord) Prepare(spec CallSpec) (*Prepared, error) {
	p, err := o.prepare(spec)
	if err != nil || len(spec.Where) == 0 {
		return p, err
	}
	sel := Selection{Target: spec.Target, Where: spec.Where, FetchFacts: true,
		Forks: spec.Forks, Timeout: spec.Timeout, ConnectTimeout: spec.ConnectTimeout}
	var notes []Note
	p.Minions, notes, err = o.narrow(context.Background(), sel, p.Minions)
	for _, n := range notes {
		o.Logger.Debug("--where: left out: its facts are not known", "minion", n.Minion, "reason", n.Reason)
	}
	if err != nil {
		return &Prepared{Notes: notes}, err
	}
	p.Notes = notes
	// A new ID, so that the job sorts after the facts job fetched for it.
	if p.JobID, err = jobs.NewID(); err != nil {
		return nil, err
	}
	return p, nil
}

// Select resolves a selection to registered minions, sorted by name: the
// one way 'call' (through Prepare) and 'minion list' read a target. A
// target that matches nothing, or nothing once Where is applied, is
// ErrNoMatch. Minions whose facts are not known are left out by Where and
// named in the notes, never dropped silently.
func (o *Overlord) Select(ctx context.Context, sel Selection) ([]jobs.Minion, []Note, error) {
	minions, err := o.resolve(sel.Target, sel.Where)
	if err != nil {
		return nil, nil, err
	}
	if len(sel.Where) == 0 {
		return minions, nil, nil
	}
	return o.narrow(ctx, sel, minions)
}

// resolve returns the registered minions a target expression matches,
// sorted by name, after checking the --where conditions' syntax. It
// fetches nothing.
func (o *Overlord) resolve(expr string, conds []string) ([]jobs.Minion, error) {
	for _, c := range conds {
		if _, err := target.ParseWhere(c); err != nil {
			return nil, err
		}
	}
	inv, err := o.Store.Inventory()
	if err != nil {
		return nil, err
	}
	all := make([]string, len(inv.Minions))
	byName := make(map[string]jobs.Minion, len(inv.Minions))
	for i, m := range inv.Minions {
		all[i] = m.Name
		byName[m.Name] = m
	}
	names, err := target.ResolveIn(expr, target.Sources{Names: all, Groups: inv.Groups, Job: o.jobOutcome})
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, noMatch(expr, len(all), inv.Groups)
	}
	out := make([]jobs.Minion, len(names))
	for i, n := range names {
		out[i] = byName[n]
	}
	return out, nil
}

// narrow keeps the minions whose facts satisfy every --where condition.
// Minions without cached facts get them fetched first if sel.FetchFacts;
// those whose facts stay unknown are left out with a note.
func (o *Overlord) narrow(ctx context.Context, sel Selection, minions []jobs.Minion) ([]jobs.Minion, []Note, error) {
	byName := make(map[string]jobs.Minion, len(minions))
	names := make([]string, len(minions))
	var unknown []string
	for i, m := range minions {
		byName[m.Name], names[i] = m, m.Name
		if m.Facts == nil {
			unknown = append(unknown, m.Name)
		}
	}
	reasons := map[string]string{}
	if len(unknown) > 0 && sel.FetchFacts {
		reasons = o.fetchFacts(ctx, sel, unknown, byName)
	} else {
		for _, n := range unknown {
			reasons[n] = fmt.Sprintf("no facts cached (fetch them with 'overlord minion facts %s')", n)
		}
	}
	var notes []Note
	for _, n := range unknown {
		if r, ok := reasons[n]; ok {
			notes = append(notes, Note{Minion: n, Reason: r})
		}
	}
	names, err := where(names, byName, sel.Where)
	if err != nil {
		return nil, notes, err
	}
	if len(names) == 0 {
		return nil, notes, fmt.Errorf("%w: %q with --where %s (facts are cached by 'overlord minion facts TARGET')",
			ErrNoMatch, sel.Target, strings.Join(sel.Where, " --where "))
	}
	out := make([]jobs.Minion, len(names))
	for i, n := range names {
		out[i] = byName[n]
	}
	return out, notes, nil
}

// noMatch is the error of a target that matched no minion; one that
// names a group without its @ says so.
func noMatch(expr string, registered int, groups map[string][]string) error {
	err := fmt.Errorf("%w: %q (%d registered)", ErrNoMatch, expr, registered)
	if bare := target.BareGroups(expr, groups); len(bare) > 0 {
		at := make([]string, len(bare))
		for i, g := range bare {
			at[i] = "@" + g
		}
		err = fmt.Errorf("%w; %s is a group: did you mean %s?", err, strings.Join(bare, ", "), strings.Join(at, ", "))
	}
	return err
}

// fetchFacts calls facts.all on the named minions, whose facts the call's
// recording caches in overlord.db (cacheFacts), and updates byName with
// them. It returns why each
// minion whose facts are still unknown has none.
func (o *Overlord) fetchFacts(ctx context.Context, sel Selection, names []string, byName map[string]jobs.Minion) map[string]string {
	reasons := make(map[string]string, len(names))
	failAll := func(err error) map[string]string {
		for _, n := range names {
			reasons[n] = fmt.Sprintf("no facts cached, and fetching them failed: %v", err)
		}
		return reasons
	}
	meth, err := builtin.Registry().Lookup("facts", "all")
	if err != nil {
		return failAll(err)
	}
	args, err := meth.Bind(nil, nil)
	if err != nil {
		return failAll(err)
	}
	id, err := jobs.NewID()
	if err != nil {
		return failAll(err)
	}
	p := &Prepared{
		JobID: id,
		Spec: CallSpec{Target: sel.Target, Module: "facts", Method: "all",
			Forks: sel.Forks, Timeout: sel.Timeout, ConnectTimeout: sel.ConnectTimeout},
		Args: args,
	}
	for _, n := range names {
		p.Minions = append(p.Minions, byName[n])
	}
	o.Logger.Debug("--where: fetching the facts of minions that have none cached", "job", id, "minions", len(names))
	job, err := o.Call(ctx, p, nil)
	if job.JobID == "" {
		return failAll(err)
	}
	inv, err := o.Store.Inventory()
	if err != nil {
		return failAll(err)
	}
	for _, m := range inv.Minions {
		if _, ok := byName[m.Name]; ok && m.Facts != nil {
			byName[m.Name] = m
		}
	}
	for _, n := range names {
		if byName[n].Facts != nil {
			continue
		}
		r := job.Minions[n]
		why := "no answer"
		if r.Error != nil {
			why = fmt.Sprintf("%s: %s", r.Error.Kind, r.Error.Message)
		}
		reasons[n] = fmt.Sprintf("no facts cached, and fetching them failed (job %s): %s", job.JobID, why)
	}
	return reasons
}

// jobOutcome returns the minions that succeeded and those that failed in
// a finished job, for failed:ID and ok:ID. id may be a unique prefix.
func (o *Overlord) jobOutcome(id string) (ok, failed []string, err error) {
	rec, entries, err := o.Store.Job(id)
	if errors.Is(err, jobs.ErrNotFound) {
		return nil, nil, fmt.Errorf("%w (see 'overlord job list')", err)
	}
	if err != nil {
		return nil, nil, err
	}
	if rec.State != status.Finished {
		return nil, nil, fmt.Errorf("job %s is still %s; wait for it to finish: overlord job status %s --wait", rec.ID, strings.ToLower(string(rec.State)), rec.ID)
	}
	for name, r := range entries {
		if r.OK {
			ok = append(ok, name)
		} else {
			failed = append(failed, name)
		}
	}
	sort.Strings(ok)
	sort.Strings(failed)
	return ok, failed, nil
}
