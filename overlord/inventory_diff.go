package overlord

import (
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/overlordhq/overlord/status"
)

// Changes of a minion between two versions of the inventory.
const (
	InventoryAdded     = "added"     // in the new version, not in the old
	InventoryRemoved   = "removed"   // in the old version, not in the new (no longer registered)
	InventoryChanged   = "changed"   // its data or its reachability changed
	InventoryUnchanged = "unchanged" // listed only because it is unreachable in the new version
)

// VolatileFacts are facts that change by themselves between any two
// snapshots; they are recorded and shown, never reported as changes.
var VolatileFacts = []string{"uptime_seconds"}

// InventoryDiff is what changed from one version of the inventory (Old)
// to another (New). Minions lists the minions that changed, and those
// unreachable in New whether or not anything changed.
type InventoryDiff struct {
	Old     int                            `json:"old"`
	OldAt   time.Time                      `json:"old_at"`
	New     int                            `json:"new"`
	NewAt   time.Time                      `json:"new_at"`
	Minions map[string]InventoryMinionDiff `json:"minions"`
	Summary InventoryDiffSummary           `json:"summary"`
}

// InventoryDiffSummary counts a diff's minions.
type InventoryDiffSummary struct {
	Minions     int `json:"minions"`     // in New
	Changed     int `json:"changed"`     // added, removed or changed
	Added       int `json:"added"`       // of Changed
	Removed     int `json:"removed"`     // of Changed
	Unreachable int `json:"unreachable"` // unreachable in New
}

// InventoryMinionDiff is what changed of one minion.
type InventoryMinionDiff struct {
	// Change is InventoryAdded, InventoryRemoved, InventoryChanged or
	// InventoryUnchanged.
	Change string `json:"change"`
	// State is the minion's state in New (in Old for a removed one);
	// OldState is its state in Old when it answered in one and was
	// unreachable in the other (a kept minion counts as it was when last
	// asked).
	State    string `json:"state"`
	OldState string `json:"old_state,omitempty"`
	// Error, AsOf and AsOfAt are New's: why it did not answer, and the
	// version its data is from.
	Error  *status.Error `json:"error,omitempty"`
	AsOf   int           `json:"as_of,omitempty"`
	AsOfAt *time.Time    `json:"as_of_at,omitempty"`

	MinionVersion *InventoryValueChange `json:"minion_version,omitempty"`
	Facts         *InventoryFactsDiff   `json:"facts,omitempty"`
	Modules       *InventoryModulesDiff `json:"modules,omitempty"`
}

// InventoryValueChange is a value in Old and in New.
type InventoryValueChange struct {
	Old any `json:"old"`
	New any `json:"new"`
}

// InventoryFactsDiff: facts New has that Old had not (with New's value),
// facts Old had that New has not (with Old's value), and facts whose value
// changed.
type InventoryFactsDiff struct {
	Added   map[string]any                  `json:"added,omitempty"`
	Removed map[string]any                  `json:"removed,omitempty"`
	Changed map[string]InventoryValueChange `json:"changed,omitempty"`
}

// InventoryModulesDiff: modules New has that Old had not, modules Old had
// that New has not, and modules that changed.
type InventoryModulesDiff struct {
	Added   map[string]InventoryModule       `json:"added,omitempty"`
	Removed map[string]InventoryModule       `json:"removed,omitempty"`
	Changed map[string]InventoryModuleChange `json:"changed,omitempty"`
}

// InventoryModuleChange is what changed of a module: its methods, its
// declared version, its file's SHA-256, whether it is broken (and why),
// whether it is a plugin.
type InventoryModuleChange struct {
	MethodsAdded   []string              `json:"methods_added,omitempty"`
	MethodsRemoved []string              `json:"methods_removed,omitempty"`
	Version        *InventoryValueChange `json:"version,omitempty"`
	SHA256         *InventoryValueChange `json:"sha256,omitempty"`
	Error          *InventoryValueChange `json:"error,omitempty"`
	Plugin         *InventoryValueChange `json:"plugin,omitempty"`
}

// diffInventories compares version a to version b.
func diffInventories(a, b Inventory) InventoryDiff {
	d := InventoryDiff{Old: a.Version, OldAt: a.At, New: b.Version, NewAt: b.At, Minions: map[string]InventoryMinionDiff{}}
	d.Summary.Minions = len(b.Minions)
	for name, nm := range b.Minions {
		if nm.State == InventoryUnreachable {
			d.Summary.Unreachable++
		}
		om, ok := a.Minions[name]
		if !ok {
			d.Minions[name] = InventoryMinionDiff{Change: InventoryAdded, State: nm.State, Error: nm.Error, AsOf: nm.AsOf, AsOfAt: nm.AsOfAt}
			d.Summary.Added++
			continue
		}
		md := diffMinion(om, nm)
		if md.Change != InventoryUnchanged || nm.State == InventoryUnreachable {
			d.Minions[name] = md
		}
	}
	for name, om := range a.Minions {
		if _, ok := b.Minions[name]; !ok {
			d.Minions[name] = InventoryMinionDiff{Change: InventoryRemoved, State: om.State}
			d.Summary.Removed++
		}
	}
	for _, md := range d.Minions {
		if md.Change != InventoryUnchanged {
			d.Summary.Changed++
		}
	}
	return d
}

// diffMinion compares a minion's entries in two versions.
func diffMinion(a, b InventoryMinion) InventoryMinionDiff {
	d := InventoryMinionDiff{Change: InventoryUnchanged, State: b.State, Error: b.Error, AsOf: b.AsOf, AsOfAt: b.AsOfAt}
	if a.unreachable() != b.unreachable() {
		d.OldState = a.State
		d.Change = InventoryChanged
	}
	if a.MinionVersion != b.MinionVersion && a.hasData() && b.hasData() {
		d.MinionVersion = &InventoryValueChange{Old: a.MinionVersion, New: b.MinionVersion}
	}
	if a.hasData() && b.hasData() {
		d.Facts = diffFacts(a.Facts, b.Facts)
		d.Modules = diffModules(a.Modules, b.Modules)
	}
	if d.MinionVersion != nil || d.Facts != nil || d.Modules != nil {
		d.Change = InventoryChanged
	}
	return d
}

func diffFacts(a, b map[string]any) *InventoryFactsDiff {
	d := &InventoryFactsDiff{}
	for k, nv := range b {
		if slices.Contains(VolatileFacts, k) {
			continue
		}
		ov, ok := a[k]
		switch {
		case !ok:
			setKey(&d.Added, k, nv)
		case !sameJSON(ov, nv):
			setKey(&d.Changed, k, InventoryValueChange{Old: ov, New: nv})
		}
	}
	for k, ov := range a {
		if _, ok := b[k]; !ok && !slices.Contains(VolatileFacts, k) {
			setKey(&d.Removed, k, ov)
		}
	}
	if d.Added == nil && d.Removed == nil && d.Changed == nil {
		return nil
	}
	return d
}

func diffModules(a, b map[string]InventoryModule) *InventoryModulesDiff {
	d := &InventoryModulesDiff{}
	for name, nm := range b {
		om, ok := a[name]
		if !ok {
			setKey(&d.Added, name, nm)
			continue
		}
		if c, changed := diffModule(om, nm); changed {
			setKey(&d.Changed, name, c)
		}
	}
	for name, om := range a {
		if _, ok := b[name]; !ok {
			setKey(&d.Removed, name, om)
		}
	}
	if d.Added == nil && d.Removed == nil && d.Changed == nil {
		return nil
	}
	return d
}

func diffModule(a, b InventoryModule) (InventoryModuleChange, bool) {
	var c InventoryModuleChange
	for _, m := range b.Methods {
		if !slices.Contains(a.Methods, m) {
			c.MethodsAdded = append(c.MethodsAdded, m)
		}
	}
	for _, m := range a.Methods {
		if !slices.Contains(b.Methods, m) {
			c.MethodsRemoved = append(c.MethodsRemoved, m)
		}
	}
	str := func(o, n string) *InventoryValueChange {
		if o == n {
			return nil
		}
		return &InventoryValueChange{Old: o, New: n}
	}
	c.Version, c.SHA256, c.Error = str(a.Version, b.Version), str(a.SHA256, b.SHA256), str(a.Error, b.Error)
	if a.Plugin != b.Plugin {
		c.Plugin = &InventoryValueChange{Old: a.Plugin, New: b.Plugin}
	}
	changed := c.MethodsAdded != nil || c.MethodsRemoved != nil || c.Version != nil || c.SHA256 != nil || c.Error != nil || c.Plugin != nil
	return c, changed
}

// setKey sets (*m)[k] = v, making the map if needed.
func setKey[V any](m *map[string]V, k string, v V) {
	if *m == nil {
		*m = map[string]V{}
	}
	(*m)[k] = v
}

// sameJSON reports whether a and b (decoded JSON values) are equal.
func sameJSON(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

// Names returns the names of the minions a diff lists, sorted.
func (d InventoryDiff) Names() []string {
	return slices.Sorted(maps.Keys(d.Minions))
}
