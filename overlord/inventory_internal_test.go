package overlord

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/status"
)

var invT0 = time.Date(2026, 11, 21, 13, 0, 0, 0, time.UTC)

func okMinion(version string, facts map[string]any, mods map[string]InventoryModule) InventoryMinion {
	return InventoryMinion{State: InventoryOK, MinionVersion: version, Facts: facts, Modules: mods}
}

func builtins() map[string]InventoryModule {
	return map[string]InventoryModule{
		"test":    {Methods: []string{"echo", "ping"}},
		"command": {Methods: []string{"run"}},
	}
}

func withModule(mods map[string]InventoryModule, name string, m InventoryModule) map[string]InventoryModule {
	out := map[string]InventoryModule{}
	for k, v := range mods {
		out[k] = v
	}
	out[name] = m
	return out
}

// asJSON renders v as the JSON a script would read, for comparisons that
// do not depend on Go's types.
func asJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestDiffInventories(t *testing.T) {
	facts := map[string]any{"os": "debian", "kernel": "6.1", "uptime_seconds": 10.0, "ip_addresses": []any{"10.0.0.1"}}
	hello := InventoryModule{Methods: []string{"greet"}, Plugin: true, Version: "1.0", SHA256: "aaaa"}
	unreachable := &status.Error{Kind: status.KindUnreachable, Message: "connection refused"}
	at := invT0.Add(-time.Hour)

	tests := []struct {
		name    string
		old     map[string]InventoryMinion
		new     map[string]InventoryMinion
		want    map[string]InventoryMinionDiff
		summary InventoryDiffSummary
	}{
		{
			name:    "nothing changed but uptime",
			old:     map[string]InventoryMinion{"web1": okMinion("1.0", facts, builtins())},
			new:     map[string]InventoryMinion{"web1": okMinion("1.0", merge(facts, map[string]any{"uptime_seconds": 99.0}), builtins())},
			want:    map[string]InventoryMinionDiff{},
			summary: InventoryDiffSummary{Minions: 1},
		},
		{
			name: "a plugin added",
			old:  map[string]InventoryMinion{"web1": okMinion("1.0", facts, builtins()), "web2": okMinion("1.0", facts, builtins())},
			new:  map[string]InventoryMinion{"web1": okMinion("1.0", facts, builtins()), "web2": okMinion("1.0", facts, withModule(builtins(), "hello", hello))},
			want: map[string]InventoryMinionDiff{"web2": {Change: InventoryChanged, State: InventoryOK,
				Modules: &InventoryModulesDiff{Added: map[string]InventoryModule{"hello": hello}}}},
			summary: InventoryDiffSummary{Minions: 2, Changed: 1},
		},
		{
			name: "a plugin changed, a module removed, a method added",
			old:  map[string]InventoryMinion{"web1": okMinion("1.0", facts, withModule(builtins(), "hello", hello))},
			new: map[string]InventoryMinion{"web1": okMinion("1.0", facts, map[string]InventoryModule{
				"test":  {Methods: []string{"echo", "ping", "sleep"}},
				"hello": {Methods: []string{"greet"}, Plugin: true, Version: "1.1", SHA256: "bbbb"},
			})},
			want: map[string]InventoryMinionDiff{"web1": {Change: InventoryChanged, State: InventoryOK,
				Modules: &InventoryModulesDiff{
					Removed: map[string]InventoryModule{"command": {Methods: []string{"run"}}},
					Changed: map[string]InventoryModuleChange{
						"test":  {MethodsAdded: []string{"sleep"}},
						"hello": {Version: &InventoryValueChange{"1.0", "1.1"}, SHA256: &InventoryValueChange{"aaaa", "bbbb"}},
					},
				}}},
			summary: InventoryDiffSummary{Minions: 1, Changed: 1},
		},
		{
			name: "facts and the minion's version",
			old:  map[string]InventoryMinion{"web1": okMinion("1.0", facts, builtins())},
			new: map[string]InventoryMinion{"web1": okMinion("1.1", map[string]any{"os": "debian", "kernel": "6.2", "arch": "amd64",
				"uptime_seconds": 1.0, "ip_addresses": []any{"10.0.0.1"}}, builtins())},
			want: map[string]InventoryMinionDiff{"web1": {Change: InventoryChanged, State: InventoryOK,
				MinionVersion: &InventoryValueChange{"1.0", "1.1"},
				Facts: &InventoryFactsDiff{
					Added:   map[string]any{"arch": "amd64"},
					Changed: map[string]InventoryValueChange{"kernel": {"6.1", "6.2"}},
				}}},
			summary: InventoryDiffSummary{Minions: 1, Changed: 1},
		},
		{
			name: "a fact removed and a list changed",
			old:  map[string]InventoryMinion{"web1": okMinion("1.0", facts, builtins())},
			new:  map[string]InventoryMinion{"web1": okMinion("1.0", map[string]any{"os": "debian", "ip_addresses": []any{"10.0.0.2"}}, builtins())},
			want: map[string]InventoryMinionDiff{"web1": {Change: InventoryChanged, State: InventoryOK,
				Facts: &InventoryFactsDiff{
					Removed: map[string]any{"kernel": "6.1"},
					Changed: map[string]InventoryValueChange{"ip_addresses": {[]any{"10.0.0.1"}, []any{"10.0.0.2"}}},
				}}},
			summary: InventoryDiffSummary{Minions: 1, Changed: 1},
		},
		{
			name: "added and removed minions",
			old:  map[string]InventoryMinion{"web1": okMinion("1.0", facts, builtins())},
			new:  map[string]InventoryMinion{"web2": okMinion("1.0", facts, builtins())},
			want: map[string]InventoryMinionDiff{
				"web1": {Change: InventoryRemoved, State: InventoryOK},
				"web2": {Change: InventoryAdded, State: InventoryOK},
			},
			summary: InventoryDiffSummary{Minions: 1, Changed: 2, Added: 1, Removed: 1},
		},
		{
			name: "became unreachable: its data kept, not dropped",
			old:  map[string]InventoryMinion{"web1": okMinion("1.0", facts, builtins())},
			new: map[string]InventoryMinion{"web1": {State: InventoryUnreachable, Error: unreachable, AsOf: 1, AsOfAt: &at,
				MinionVersion: "1.0", Facts: facts, Modules: builtins()}},
			want: map[string]InventoryMinionDiff{"web1": {Change: InventoryChanged, State: InventoryUnreachable, OldState: InventoryOK,
				Error: unreachable, AsOf: 1, AsOfAt: &at}},
			summary: InventoryDiffSummary{Minions: 1, Changed: 1, Unreachable: 1},
		},
		{
			name: "still unreachable: listed, not a change",
			old: map[string]InventoryMinion{"web1": {State: InventoryUnreachable, Error: unreachable, AsOf: 1, AsOfAt: &at,
				MinionVersion: "1.0", Facts: facts, Modules: builtins()}},
			new: map[string]InventoryMinion{"web1": {State: InventoryUnreachable, Error: unreachable, AsOf: 1, AsOfAt: &at,
				MinionVersion: "1.0", Facts: facts, Modules: builtins()}},
			want: map[string]InventoryMinionDiff{"web1": {Change: InventoryUnchanged, State: InventoryUnreachable,
				Error: unreachable, AsOf: 1, AsOfAt: &at}},
			summary: InventoryDiffSummary{Minions: 1, Unreachable: 1},
		},
		{
			name: "reachable again, with a change",
			old: map[string]InventoryMinion{"web1": {State: InventoryUnreachable, Error: unreachable, AsOf: 1, AsOfAt: &at,
				MinionVersion: "1.0", Facts: facts, Modules: builtins()}},
			new: map[string]InventoryMinion{"web1": okMinion("1.0", facts, withModule(builtins(), "hello", hello))},
			want: map[string]InventoryMinionDiff{"web1": {Change: InventoryChanged, State: InventoryOK, OldState: InventoryUnreachable,
				Modules: &InventoryModulesDiff{Added: map[string]InventoryModule{"hello": hello}}}},
			summary: InventoryDiffSummary{Minions: 1, Changed: 1},
		},
		{
			name:    "never answered, then answered",
			old:     map[string]InventoryMinion{"web1": {State: InventoryUnreachable, Error: unreachable}},
			new:     map[string]InventoryMinion{"web1": okMinion("1.0", facts, builtins())},
			want:    map[string]InventoryMinionDiff{"web1": {Change: InventoryChanged, State: InventoryOK, OldState: InventoryUnreachable}},
			summary: InventoryDiffSummary{Minions: 1, Changed: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := diffInventories(Inventory{Version: 1, At: invT0, Minions: tt.old}, Inventory{Version: 2, At: invT0.Add(time.Hour), Minions: tt.new})
			if got, want := asJSON(t, d.Minions), asJSON(t, tt.want); got != want {
				t.Errorf("minions:\n got %s\nwant %s", got, want)
			}
			if d.Summary != tt.summary {
				t.Errorf("summary = %+v, want %+v", d.Summary, tt.summary)
			}
			if d.Old != 1 || d.New != 2 || !d.NewAt.Equal(invT0.Add(time.Hour)) {
				t.Errorf("versions: %d (%s) -> %d (%s)", d.Old, d.OldAt, d.New, d.NewAt)
			}
		})
	}
}

func merge(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// nextInventory keeps what it knew of minions that did not answer or
// were not asked, drops minions no longer registered, and never invents
// data for a minion that never answered.
func TestNextInventory(t *testing.T) {
	facts := map[string]any{"os": "debian"}
	unreachable := &status.Error{Kind: status.KindUnreachable, Message: "connection refused"}
	v1 := Inventory{Version: 1, At: invT0, Target: "*", Minions: map[string]InventoryMinion{
		"a":    okMinion("1.0", facts, builtins()),
		"b":    okMinion("1.0", facts, builtins()),
		"c":    okMinion("1.0", facts, builtins()),
		"d":    {State: InventoryUnreachable, Error: unreachable},
		"gone": okMinion("1.0", facts, builtins()),
	}}
	registered := []jobs.Minion{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}, {Name: "new"}}
	answers := map[string]answer{
		"a":   {entry: okMinion("1.1", facts, builtins())},
		"b":   {entry: InventoryMinion{State: InventoryUnreachable, Error: unreachable}},
		"new": {entry: InventoryMinion{State: InventoryUnreachable, Error: unreachable}},
		// c and d not asked (outside the target)
	}
	t1 := invT0.Add(time.Hour)
	v2 := nextInventory(&v1, registered, answers, "a,b,new", t1)
	v2.Version = 2
	at0 := invT0
	want := map[string]InventoryMinion{
		"a":   okMinion("1.1", facts, builtins()),
		"b":   {State: InventoryUnreachable, Error: unreachable, AsOf: 1, AsOfAt: &at0, MinionVersion: "1.0", Facts: facts, Modules: builtins()},
		"c":   {State: InventoryKept, AsOf: 1, AsOfAt: &at0, MinionVersion: "1.0", Facts: facts, Modules: builtins()},
		"d":   {State: InventoryKept, Error: unreachable},
		"new": {State: InventoryUnreachable, Error: unreachable},
	}
	if got, w := asJSON(t, v2.Minions), asJSON(t, want); got != w {
		t.Errorf("version 2:\n got %s\nwant %s", got, w)
	}
	// A third version, b still unreachable: its data is still version 1's.
	v3 := nextInventory(&v2, registered, map[string]answer{"b": answers["b"]}, "b", t1.Add(time.Hour))
	if b := v3.Minions["b"]; b.AsOf != 1 || !b.AsOfAt.Equal(invT0) || b.MinionVersion != "1.0" {
		t.Errorf("b in version 3: %+v, want its data as of version 1", b)
	}
	if c := v3.Minions["c"]; c.AsOf != 1 || c.State != InventoryKept {
		t.Errorf("c in version 3: %+v, want kept as of version 1", c)
	}
	if a := v3.Minions["a"]; a.State != InventoryKept || a.AsOf != 2 || a.MinionVersion != "1.1" {
		t.Errorf("a in version 3: %+v, want kept as of version 2", a)
	}
	if !reflect.DeepEqual(nextInventory(nil, registered, nil, "x", t1).Minions, map[string]InventoryMinion{}) {
		t.Error("a first version of minions never asked holds entries")
	}
}

func TestParseInventoryRef(t *testing.T) {
	now := time.Date(2026, 11, 21, 13, 0, 0, 0, time.UTC)
	good := map[string]InventoryRef{
		"7":                    {Version: 7},
		"2026-11-20T10:00:00Z": {At: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)},
		"2026-11-20 10:30":     {At: time.Date(2026, 11, 20, 10, 30, 0, 0, time.Local)},
		"2026-11-20":           {At: time.Date(2026, 11, 20, 0, 0, 0, 0, time.Local)},
		"36h":                  {At: now.Add(-36 * time.Hour)},
	}
	for in, want := range good {
		got, err := ParseInventoryRef(in, now)
		if err != nil || got.Version != want.Version || !got.At.Equal(want.At) {
			t.Errorf("%q: %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "-3", "yesterday", "", "-5h", "2026-13-01"} {
		if _, err := ParseInventoryRef(in, now); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
