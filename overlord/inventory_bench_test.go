package overlord

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/modules/builtin"
)

// syntheticFleet makes the answers of n minions as a real fleet gives
// them: the built-in modules (the same everywhere), zero to three of five
// plugins in two releases each, and facts that differ from host to host
// (names, addresses, memory, uptime) or by group (OS, kernel, CPUs).
func syntheticFleet(n int, rng *rand.Rand) map[string]answer {
	builtins := map[string]InventoryModule{}
	for _, m := range builtin.Registry().DescribeAll() {
		var methods []string
		for _, meth := range m.Methods {
			methods = append(methods, meth.Name)
		}
		sort.Strings(methods)
		builtins[m.Name] = InventoryModule{Methods: methods}
	}
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	oses := []struct{ os, version, kernel string }{
		{"debian", "12", "6.1.0-18-amd64"}, {"debian", "12", "6.1.0-21-amd64"}, {"rhel", "9.4", "5.14.0-427.el9.x86_64"},
	}
	out := make(map[string]answer, n)
	for i := range n {
		o := oses[rng.IntN(len(oses))]
		mods := make(map[string]InventoryModule, len(builtins)+3)
		for k, v := range builtins {
			mods[k] = v
		}
		for p := range rng.IntN(4) {
			name := fmt.Sprintf("plugin%d", (i+p)%5)
			release := rng.IntN(2)
			mods[name] = InventoryModule{Methods: []string{"apply", "check", "status"}, Plugin: true,
				Version: fmt.Sprintf("1.%d.0", release), SHA256: sum(name + fmt.Sprint(release))}
		}
		facts := map[string]any{
			"hostname": fmt.Sprintf("web%04d", i), "fqdn": fmt.Sprintf("web%04d.dc1.example.com", i),
			"os": o.os, "os_version": o.version, "kernel": o.kernel, "arch": "amd64",
			"cpus":           float64([]int{2, 4, 8, 16}[rng.IntN(4)]),
			"memory_bytes":   float64(8<<30 - rng.IntN(1<<24)),
			"uptime_seconds": float64(rng.IntN(90 * 86400)),
			"ip_addresses":   []any{fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), fmt.Sprintf("fd00::%x", i+1)},
			"minion_version": "1.4.2",
		}
		out[fmt.Sprintf("web%04d", i)] = answer{entry: InventoryMinion{State: InventoryOK, MinionVersion: "1.4.2", Facts: facts, Modules: mods}}
	}
	return out
}

// BenchmarkInventoryVersion records versions of a 1,000-minion fleet into
// an overlord.db that keeps 100, as a snapshot does once the answers are
// in: read and decode the version before, make the new one (carry-over
// and diff), encode, compress and write it, and delete the oldest. Between
// versions every uptime changes and 1% of the minions change a plugin.
//
// Metrics: bytes/minion (one version, stored, per minion),
// json-bytes/minion (the same before compression), KiB/version, and db-MiB, overlord.db's size after the run (at least 100 versions).
func BenchmarkInventoryVersion(b *testing.B) {
	const n, keep = 1000, 100
	rng := rand.New(rand.NewPCG(1, 2))
	answers := syntheticFleet(n, rng)
	registered := make([]jobs.Minion, 0, n)
	for name := range answers {
		registered = append(registered, jobs.Minion{Name: name})
	}
	store := jobs.New(filepath.Join(b.TempDir(), DBFile), 0)
	if err := store.Init(); err != nil {
		b.Fatal(err)
	}
	var raw int // the last version's JSON, uncompressed
	add := func() jobs.InventoryHead {
		at := time.Now().UTC()
		h, err := store.AddInventory(keep, keep, func(prev *jobs.InventoryRecord) (jobs.InventoryHead, []byte, error) {
			var old *Inventory
			if prev != nil {
				inv, err := decodeInventory(*prev)
				if err != nil {
					return jobs.InventoryHead{}, nil, err
				}
				old = &inv
			}
			inv := nextInventory(old, registered, answers, "*", at)
			body, err := json.Marshal(inventoryBody{Format: inventoryFormat, Minions: inv.Minions})
			if err != nil {
				return jobs.InventoryHead{}, nil, err
			}
			raw = len(body)
			h := jobs.InventoryHead{At: at, Target: "*", Minions: len(inv.Minions)}
			if old != nil {
				h.Changed = diffInventories(*old, inv).Summary.Changed
			}
			return h, body, nil
		})
		if err != nil {
			b.Fatal(err)
		}
		return h
	}
	change := func() {
		for _, a := range answers {
			a.entry.Facts["uptime_seconds"] = a.entry.Facts["uptime_seconds"].(float64) + 3600
		}
		for range n / 100 {
			name := fmt.Sprintf("web%04d", rng.IntN(n))
			mods := answers[name].entry.Modules
			mods["plugin9"] = InventoryModule{Methods: []string{"run"}, Plugin: true, SHA256: fmt.Sprintf("%064x", rng.Uint64())}
		}
	}
	for range keep { // a full store first
		change()
		add()
	}
	var last jobs.InventoryHead
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		change()
		b.StartTimer()
		last = add()
	}
	b.StopTimer()
	fi, err := os.Stat(store.Path())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(last.Bytes)/n, "bytes/minion")
	b.ReportMetric(float64(raw)/n, "json-bytes/minion")
	b.ReportMetric(float64(last.Bytes)/1024, "KiB/version")
	b.ReportMetric(float64(fi.Size())/(1<<20), "db-MiB")
	if last.Changed < n/100/2 || last.Changed > n/100 {
		b.Errorf("the last version changed %d minions, want about %d", last.Changed, n/100)
	}
}

// BenchmarkInventoryDiff compares the two newest of 100 versions of a
// 1,000-minion fleet, as 'overlord inventory diff' does: both read,
// decompressed and decoded, then compared.
func BenchmarkInventoryDiff(b *testing.B) {
	const n = 1000
	rng := rand.New(rand.NewPCG(3, 4))
	answers := syntheticFleet(n, rng)
	var registered []jobs.Minion
	for name := range answers {
		registered = append(registered, jobs.Minion{Name: name})
	}
	o := New(b.TempDir(), "", 0, nil)
	if err := o.Store.Init(); err != nil {
		b.Fatal(err)
	}
	for i := range 2 {
		if i == 1 {
			answers["web0007"].entry.Facts["kernel"] = "6.1.0-22-amd64"
		}
		if _, err := o.Store.AddInventory(100, 100, func(prev *jobs.InventoryRecord) (jobs.InventoryHead, []byte, error) {
			inv := nextInventory(nil, registered, answers, "*", time.Now().UTC())
			body, err := json.Marshal(inventoryBody{Format: inventoryFormat, Minions: inv.Minions})
			return jobs.InventoryHead{At: time.Now().UTC(), Minions: n}, body, err
		}); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		d, err := o.InventoryDiff(0, 0)
		if err != nil {
			b.Fatal(err)
		}
		if len(d.Minions) != 1 {
			b.Fatalf("diff: %d minions, want web0007 alone", len(d.Minions))
		}
	}
}
