package overlord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// DefaultInventoryKeep is how many inventory versions are kept unless
// told otherwise: a snapshot deletes the oldest beyond it.
const DefaultInventoryKeep = 100

// States of a minion in an inventory version.
const (
	// InventoryOK: the minion answered for this version.
	InventoryOK = "ok"
	// InventoryUnreachable: the minion was asked and did not answer (the
	// error says why, whatever its kind); its data, if any, is kept from
	// the version AsOf.
	InventoryUnreachable = "unreachable"
	// InventoryKept: the minion was outside the snapshot's target; its
	// data is kept from the version AsOf, and its Error, if any, says why
	// it did not answer when it was last asked.
	InventoryKept = "kept"
)

// InventoryVersion is one version of the inventory, as listed: when it
// was taken, of which target, how many minions it holds, how many of
// those asked did not answer (Unreachable), and how many changed since the
// version before it (see InventoryDiffSummary.Changed).
type InventoryVersion struct {
	Version     int       `json:"version"`
	At          time.Time `json:"at"`
	Target      string    `json:"target"`
	Minions     int       `json:"minions"`
	Unreachable int       `json:"unreachable"`
	Changed     int       `json:"changed"`
	Bytes       int       `json:"bytes"` // its size in overlord.db (compressed)
}

// Inventory is one version of the inventory: every minion registered when
// it was taken that has ever been recorded, by name.
type Inventory struct {
	Version int                        `json:"version"`
	At      time.Time                  `json:"at"`
	Target  string                     `json:"target"`
	Minions map[string]InventoryMinion `json:"minions"`
}

// InventoryMinion is one minion in a version of the inventory.
type InventoryMinion struct {
	// State is InventoryOK, InventoryUnreachable or InventoryKept.
	State string `json:"state"`
	// Error is why it did not answer (for a kept minion: when it was last
	// asked).
	Error *status.Error `json:"error,omitempty"`
	// AsOf is the version the data below was recorded in, when not this
	// one (an unreachable or kept minion's), and AsOfAt when: a minion's
	// data is never dropped because it did not answer.
	AsOf   int        `json:"as_of,omitempty"`
	AsOfAt *time.Time `json:"as_of_at,omitempty"`

	MinionVersion string                     `json:"minion_version,omitempty"`
	Facts         map[string]any             `json:"facts,omitempty"`
	Modules       map[string]InventoryModule `json:"modules,omitempty"`
}

// unreachable reports whether m did not answer when it was last asked.
func (m InventoryMinion) unreachable() bool {
	return m.State == InventoryUnreachable || (m.State == InventoryKept && m.Error != nil)
}

// hasData reports whether m holds what a minion said (facts, modules).
func (m InventoryMinion) hasData() bool {
	return m.MinionVersion != "" || m.Facts != nil || m.Modules != nil
}

// InventoryModule is a module of a minion: its methods' names, and for a
// plugin its declared version, the SHA-256 of its file, and why it is
// broken if it is.
type InventoryModule struct {
	Methods []string `json:"methods"`
	Plugin  bool     `json:"plugin,omitempty"`
	Version string   `json:"version,omitempty"`
	SHA256  string   `json:"sha256,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// inventoryFormat is the version of the stored snapshot's layout.
const inventoryFormat = 1

// inventoryBody is what overlord.db keeps of a version besides its head.
type inventoryBody struct {
	Format  int                        `json:"format"`
	Minions map[string]InventoryMinion `json:"minions"`
}

// SnapshotOptions are a snapshot's knobs; zero values are the defaults.
type SnapshotOptions struct {
	// Keep is how many versions to keep, from now on: overlord.db
	// remembers it. 0 keeps the number last given, or
	// DefaultInventoryKeep if none was.
	Keep    int
	Forks   int           // minions asked at once (fanout.DefaultForks)
	Timeout time.Duration // each minion's answers (DefaultCallTimeout)
}

// answer is what one minion said for a snapshot.
type answer struct {
	entry InventoryMinion // State InventoryOK, or InventoryUnreachable with Error
	desc  *rpc.DescribeReply
}

// InventorySnapshot asks every minion target matches ("*" if empty) for
// its facts (facts.all) and its modules (Minion.Describe) and records what
// they said as a new version of the inventory, keeping the newest
// opts.Keep versions (see SnapshotOptions). A minion that does not answer is recorded
// unreachable, with its data kept from the version before; registered
// minions outside the target keep their entries; minions no longer
// registered are left out. No job is recorded; the facts refresh the
// registry's cache (as 'overlord minion facts' does) and the plugin
// descriptions the cache 'overlord modules' keeps. ErrNoMatch if the
// target matches no minion.
func (o *Overlord) InventorySnapshot(ctx context.Context, target string, opts SnapshotOptions) (InventoryVersion, error) {
	if target == "" {
		target = "*"
	}
	if opts.Keep < 0 {
		return InventoryVersion{}, fmt.Errorf("keep at least 1 inventory version, not %d", opts.Keep)
	}
	if opts.Forks <= 0 {
		opts.Forks = fanout.DefaultForks
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultCallTimeout
	}
	asked, _, err := o.Select(ctx, Selection{Target: target})
	if err != nil {
		return InventoryVersion{}, err
	}
	client, err := o.Client(asked, opts.Forks, DefaultConnectTimeout)
	if err != nil {
		return InventoryVersion{}, err
	}
	defer client.Close()
	answers := make(map[string]answer, len(asked))
	names := make([]string, len(asked))
	for i, m := range asked {
		names[i] = m.Name
	}
	fanout.Run(ctx, names, opts.Forks, func(ctx context.Context, name string) answer {
		return askInventory(ctx, client, name, opts.Timeout)
	}, func(name string, a answer) { answers[name] = a })
	if err := ctx.Err(); err != nil {
		return InventoryVersion{}, err
	}
	o.cacheInventory(asked, answers)

	registered, err := o.Store.Minions()
	if err != nil {
		return InventoryVersion{}, err
	}
	at := time.Now().UTC()
	head, err := o.Store.AddInventory(opts.Keep, DefaultInventoryKeep, func(prev *jobs.InventoryRecord) (jobs.InventoryHead, []byte, error) {
		var old *Inventory
		if prev != nil {
			inv, err := decodeInventory(*prev)
			if err != nil {
				o.Logger.Warn("the previous inventory version does not decode; this one keeps no data of minions that do not answer", "err", err)
			} else {
				old = &inv
			}
		}
		inv := nextInventory(old, registered, answers, target, at)
		body, err := json.Marshal(inventoryBody{Format: inventoryFormat, Minions: inv.Minions})
		if err != nil {
			return jobs.InventoryHead{}, nil, err
		}
		h := jobs.InventoryHead{At: at, Target: target, Minions: len(inv.Minions)}
		for _, m := range inv.Minions {
			if m.State == InventoryUnreachable {
				h.Unreachable++
			}
		}
		if old != nil {
			h.Changed = diffInventories(*old, inv).Summary.Changed
		} else {
			h.Changed = len(inv.Minions)
		}
		return h, body, nil
	})
	if err != nil {
		return InventoryVersion{}, err
	}
	return InventoryVersion(head), nil
}

// askInventory asks one minion for its modules and facts.
func askInventory(ctx context.Context, client *rpc.Client, name string, timeout time.Duration) answer {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fail := func(err error) answer {
		return answer{entry: InventoryMinion{State: InventoryUnreachable, Error: rpc.Classify(ctx, err)}}
	}
	var desc rpc.DescribeReply
	if err := client.Call(ctx, name, "Minion.Describe", rpc.DescribeParams{}, &desc); err != nil {
		return fail(err)
	}
	var reply rpc.CallReply
	if err := client.Call(ctx, name, "Minion.Call", rpc.CallParams{Module: "facts", Method: "all", TimeoutMS: timeout.Milliseconds()}, &reply); err != nil {
		return fail(err)
	}
	var facts map[string]any
	if err := json.Unmarshal(reply.Result, &facts); err != nil || facts == nil {
		return answer{entry: InventoryMinion{State: InventoryUnreachable,
			Error: status.Errorf(status.KindInternal, "facts.all answered no object of facts")}}
	}
	e := InventoryMinion{State: InventoryOK, MinionVersion: desc.Version, Facts: facts, Modules: map[string]InventoryModule{}}
	for _, m := range desc.Modules {
		methods := make([]string, 0, len(m.Methods))
		for _, meth := range m.Methods {
			methods = append(methods, meth.Name)
		}
		sort.Strings(methods)
		e.Modules[m.Name] = InventoryModule{Methods: methods, Plugin: m.Plugin, Version: m.Version, SHA256: m.SHA256, Error: m.Error}
	}
	return answer{entry: e, desc: &desc}
}

// cacheInventory keeps what the minions said where other commands look
// for it: their facts (for --where), their plugins' descriptions (for
// typing plugin arguments) and when they were last seen. Failing to is
// a warning: the snapshot is made all the same.
func (o *Overlord) cacheInventory(asked []jobs.Minion, answers map[string]answer) {
	facts := map[string]map[string]any{}
	descs := map[string]Description{}
	var seen []string
	for name, a := range answers {
		if a.entry.State != InventoryOK {
			continue
		}
		facts[name] = a.entry.Facts
		descs[name] = Description{Reply: a.desc}
		seen = append(seen, name)
	}
	if len(seen) == 0 {
		return
	}
	if err := o.Store.CacheFacts(facts); err != nil {
		o.Logger.Warn("could not cache the minions' facts", "err", err)
	}
	if err := o.Store.TouchMinions(seen, time.Now()); err != nil {
		o.Logger.Warn("could not record when minions were last seen", "err", err)
	}
	o.cacheModules(asked, descs)
}

// nextInventory makes a version from the one before it (old, nil if
// none), the names registered now and the answers of the minions asked.
func nextInventory(old *Inventory, registered []jobs.Minion, answers map[string]answer, target string, at time.Time) Inventory {
	inv := Inventory{At: at, Target: target, Minions: map[string]InventoryMinion{}}
	for _, r := range registered {
		prev, hadPrev := InventoryMinion{}, false
		if old != nil {
			prev, hadPrev = old.Minions[r.Name]
		}
		a, ok := answers[r.Name]
		switch {
		case ok && a.entry.State == InventoryOK:
			inv.Minions[r.Name] = a.entry
		case ok:
			e := a.entry
			if hadPrev && prev.hasData() {
				e.MinionVersion, e.Facts, e.Modules = prev.MinionVersion, prev.Facts, prev.Modules
				e.AsOf, e.AsOfAt = dataOf(prev, *old)
			}
			inv.Minions[r.Name] = e
		case hadPrev:
			e := prev
			e.State = InventoryKept // its Error, if any, is from when it was last asked
			if e.hasData() {
				e.AsOf, e.AsOfAt = dataOf(prev, *old)
			}
			inv.Minions[r.Name] = e
		}
	}
	return inv
}

// dataOf returns the version m's data was recorded in, m being an entry
// of version v.
func dataOf(m InventoryMinion, v Inventory) (int, *time.Time) {
	if m.AsOf != 0 {
		return m.AsOf, m.AsOfAt
	}
	at := v.At
	return v.Version, &at
}

func decodeInventory(rec jobs.InventoryRecord) (Inventory, error) {
	var b inventoryBody
	if err := json.Unmarshal(rec.Data, &b); err != nil {
		return Inventory{}, fmt.Errorf("inventory version %d is %w: %v", rec.Head.Version, jobs.ErrDamaged, err)
	}
	if b.Format != inventoryFormat {
		return Inventory{}, fmt.Errorf("inventory version %d has format %d; this overlord reads format %d", rec.Head.Version, b.Format, inventoryFormat)
	}
	if b.Minions == nil {
		b.Minions = map[string]InventoryMinion{}
	}
	return Inventory{Version: rec.Head.Version, At: rec.Head.At, Target: rec.Head.Target, Minions: b.Minions}, nil
}

// InventoryVersions lists the inventory's versions, newest first.
func (o *Overlord) InventoryVersions() ([]InventoryVersion, error) {
	heads, err := o.Store.InventoryHeads()
	if err != nil {
		return nil, err
	}
	out := make([]InventoryVersion, len(heads))
	for i, h := range heads {
		out[i] = InventoryVersion(h)
	}
	return out, nil
}

// InventoryAt returns version v of the inventory, the newest if v is 0.
// See InventoryResolve for versions named by time.
func (o *Overlord) InventoryAt(v int) (Inventory, error) {
	rec, err := o.Store.InventoryVersion(v)
	if err != nil {
		return Inventory{}, inventoryError(err)
	}
	return decodeInventory(rec)
}

// inventoryError adds what to do to an error reading a version.
func inventoryError(err error) error {
	if errors.Is(err, jobs.ErrNotFound) {
		return fmt.Errorf("%w (see 'overlord inventory list'; 'overlord inventory snapshot' takes one)", err)
	}
	return err
}

// InventoryRef names a version of the inventory: by number, or as the
// newest one taken at or before a time.
type InventoryRef struct {
	Version int
	At      time.Time
}

// ParseInventoryRef reads a version as the CLI and the API take it: a
// version number, a time (RFC 3339, or "2006-01-02 15:04", or a date,
// both in local time), or a duration ago ("36h", relative to now).
func ParseInventoryRef(s string, now time.Time) (InventoryRef, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 {
			return InventoryRef{}, fmt.Errorf("bad inventory version %q: versions are numbered from 1", s)
		}
		return InventoryRef{Version: n}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return InventoryRef{At: t}, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return InventoryRef{At: t}, nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return InventoryRef{At: now.Add(-d)}, nil
	}
	return InventoryRef{}, fmt.Errorf("bad inventory version %q: want a version number, a time (2026-11-21T13:00:00Z, \"2026-11-21 13:00\", 2026-11-21) or a duration ago (36h)", s)
}

// InventoryResolve returns the number of the version ref names: its
// Version, or the newest version taken at or before its At.
func (o *Overlord) InventoryResolve(ref InventoryRef) (int, error) {
	if ref.Version != 0 {
		return ref.Version, nil
	}
	heads, err := o.Store.InventoryHeads()
	if err != nil {
		return 0, err
	}
	for _, h := range heads { // newest first
		if !h.At.After(ref.At) {
			return h.Version, nil
		}
	}
	if len(heads) == 0 {
		return 0, inventoryError(fmt.Errorf("inventory: no version yet: %w", jobs.ErrNotFound))
	}
	oldest := heads[len(heads)-1]
	return 0, fmt.Errorf("no inventory version was taken at or before %s: the oldest kept is version %d, of %s",
		ref.At.Format(time.RFC3339), oldest.Version, oldest.At.Format(time.RFC3339))
}

// InventoryDiff compares two versions: what changed from version old to
// version new, per minion. new 0 is the newest version; old 0 the one
// before new.
func (o *Overlord) InventoryDiff(old, new int) (InventoryDiff, error) {
	if new == 0 || old == 0 {
		heads, err := o.Store.InventoryHeads()
		if err != nil {
			return InventoryDiff{}, err
		}
		if new == 0 {
			if len(heads) == 0 {
				return InventoryDiff{}, inventoryError(fmt.Errorf("inventory: no version yet: %w", jobs.ErrNotFound))
			}
			new = heads[0].Version
		}
		if old == 0 {
			for _, h := range heads {
				if h.Version < new {
					old = h.Version
					break
				}
			}
			if old == 0 {
				return InventoryDiff{}, fmt.Errorf("inventory version %d has no version before it to compare with; take another with 'overlord inventory snapshot'", new)
			}
		}
	}
	a, err := o.InventoryAt(old)
	if err != nil {
		return InventoryDiff{}, err
	}
	b, err := o.InventoryAt(new)
	if err != nil {
		return InventoryDiff{}, err
	}
	return diffInventories(a, b), nil
}

// inventoryDue returns how long to wait before the next scheduled
// snapshot: every after the newest version, at once if it is older or
// there is none.
func (o *Overlord) inventoryDue(every time.Duration, now time.Time) time.Duration {
	heads, err := o.Store.InventoryHeads()
	if err != nil || len(heads) == 0 {
		return 0
	}
	return max(0, heads[0].At.Add(every).Sub(now))
}

// inventoryLoop takes a snapshot of every minion when one is due (see
// inventoryDue) and then every InventoryEvery.
func (s *Service) inventoryLoop(ctx context.Context) {
	defer s.scans.Done()
	t := time.NewTimer(s.o.inventoryDue(s.cfg.InventoryEvery, time.Now()))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, err := s.o.InventorySnapshot(ctx, "*", SnapshotOptions{Keep: s.cfg.InventoryKeep})
		switch {
		case errors.Is(err, ErrNoMatch):
			s.logger.Debug("inventory snapshot: no minion registered")
		case err != nil && ctx.Err() == nil:
			s.logger.Warn("inventory snapshot", "err", err)
		case err == nil:
			s.logger.Info("inventory snapshot", "version", v.Version, "minions", v.Minions, "unreachable", v.Unreachable, "changed", v.Changed)
		}
		t.Reset(s.cfg.InventoryEvery)
	}
}
