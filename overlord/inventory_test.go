package overlord_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/minion"
	"github.com/overlordhq/overlord/minion/miniontest"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

const helloPlugin = `#!/bin/sh
case "$1" in
describe) echo '{"doc": "Say hello.", "version": "0.3", "methods": [{"name": "greet", "doc": "Greet.", "params": []}]}' ;;
call) echo '{"hello": true}' ;;
esac
`

// installPlugin writes plugin name into a minion's modules.d and returns
// its SHA-256.
func installPlugin(t *testing.T, stateDir, name, body string) string {
	t.Helper()
	dir := filepath.Join(stateDir, minion.PluginDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(body))
	return hex.EncodeToString(sum[:])
}

func snapshot(t *testing.T, o *overlord.Overlord, target string, opts overlord.SnapshotOptions) overlord.InventoryVersion {
	t.Helper()
	v, err := o.InventorySnapshot(context.Background(), target, opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Snapshots of real in-process minions: what each says is recorded; a
// plugin added on one minion is that minion's only change, with its
// checksum; a minion that stops answering keeps its data, marked with the
// version it is from; retention keeps the newest versions.
func TestInventorySnapshots(t *testing.T) {
	f := miniontest.Start(t, miniontest.Config{Minions: 2})
	o := f.Overlord
	a, b := f.Names[0], f.Names[1]

	if _, err := o.InventoryDiff(0, 0); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("diff with no versions: %v, want ErrNotFound", err)
	}
	v1 := snapshot(t, o, "", overlord.SnapshotOptions{})
	if v1.Version != 1 || v1.Minions != 2 || v1.Unreachable != 0 || v1.Changed != 2 || v1.Target != "*" || v1.Bytes == 0 {
		t.Errorf("first version: %+v", v1)
	}
	inv, err := o.InventoryAt(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range f.Names {
		m := inv.Minions[n]
		if m.State != overlord.InventoryOK || m.MinionVersion == "" || m.Facts["minion_version"] == nil || len(m.Modules["test"].Methods) == 0 {
			t.Errorf("%s in version 1: %+v, want its version, facts and modules", n, m)
		}
	}
	if _, err := o.InventoryDiff(0, 0); err == nil || !strings.Contains(err.Error(), "no version before it") {
		t.Errorf("diff of one version: %v", err)
	}

	sum := installPlugin(t, f.StateDirs[1], "hello", helloPlugin)
	v2 := snapshot(t, o, "*", overlord.SnapshotOptions{})
	if v2.Version != 2 || v2.Changed != 1 {
		t.Errorf("after a plugin on %s: %+v, want version 2 with 1 minion changed", b, v2)
	}
	d, err := o.InventoryDiff(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d.Old != 1 || d.New != 2 || len(d.Minions) != 1 {
		t.Fatalf("diff: %d -> %d, minions %+v; want 1 -> 2, %s alone", d.Old, d.New, d.Minions, b)
	}
	md := d.Minions[b]
	hello := md.Modules.Added["hello"]
	if md.Change != overlord.InventoryChanged || md.Facts != nil || md.Modules.Changed != nil || md.Modules.Removed != nil ||
		hello.SHA256 != sum || hello.Version != "0.3" || !hello.Plugin || strings.Join(hello.Methods, ",") != "greet" {
		t.Errorf("%s's change: %+v, module %+v; want hello added with sha256 %s", b, md, hello, sum)
	}
	// The registry's caches were refreshed on the way.
	ms, err := o.Store.Minions()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Facts["minion_version"] == nil || m.LastSeen == nil {
			t.Errorf("%s in the registry: facts %v, last seen %v; want both refreshed", m.Name, m.Facts, m.LastSeen)
		}
	}
	if c, err := o.Store.CachedModules([]string{b}); err != nil || len(c[b].Modules) != 1 || c[b].Modules[0].SHA256 != sum {
		t.Errorf("the plugin cache of %s: %+v, %v", b, c, err)
	}

	// a stops answering.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.Minions[0].Close(ctx); err != nil {
		t.Fatal(err)
	}
	v3 := snapshot(t, o, "*", overlord.SnapshotOptions{Timeout: 5 * time.Second})
	if v3.Unreachable != 1 || v3.Changed != 1 {
		t.Errorf("with %s down: %+v, want 1 unreachable, 1 changed", a, v3)
	}
	inv, err = o.InventoryAt(3)
	if err != nil {
		t.Fatal(err)
	}
	ma := inv.Minions[a]
	if ma.State != overlord.InventoryUnreachable || ma.Error == nil || ma.Error.Kind != status.KindUnreachable ||
		ma.AsOf != 2 || ma.AsOfAt == nil || !ma.AsOfAt.Equal(v2.At) || ma.Facts == nil || ma.Modules["test"].Methods == nil {
		t.Errorf("%s in version 3: %+v, want unreachable with version 2's data", a, ma)
	}
	d, err = o.InventoryDiff(2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if md := d.Minions[a]; len(d.Minions) != 1 || md.State != overlord.InventoryUnreachable || md.OldState != overlord.InventoryOK || md.AsOf != 2 || md.Modules != nil {
		t.Errorf("diff 2 3: %+v, want %s alone, now unreachable, data as of 2", d.Minions, a)
	}

	// A snapshot of b alone keeps a's entry as it was.
	v4 := snapshot(t, o, b, overlord.SnapshotOptions{Keep: 2})
	inv, err = o.InventoryAt(0)
	if err != nil {
		t.Fatal(err)
	}
	if ma := inv.Minions[a]; v4.Target != b || v4.Changed != 0 || v4.Unreachable != 0 || ma.State != overlord.InventoryKept || ma.Error == nil || ma.AsOf != 2 || inv.Minions[b].State != overlord.InventoryOK {
		t.Errorf("version 4 of %s alone: %+v, minions %+v", b, v4, inv.Minions)
	}
	vs, err := o.InventoryVersions()
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 || vs[0].Version != 4 || vs[1].Version != 3 {
		t.Errorf("versions kept with keep 2: %+v, want 4 and 3", vs)
	}
	if _, err := o.InventoryAt(1); !errors.Is(err, jobs.ErrNotFound) || !strings.Contains(err.Error(), "inventory list") {
		t.Errorf("a version retention deleted: %v, want ErrNotFound with a hint", err)
	}

	// Versions by time.
	if n, err := o.InventoryResolve(overlord.InventoryRef{At: v4.At}); err != nil || n != 4 {
		t.Errorf("at version 4's time: %d, %v", n, err)
	}
	if n, err := o.InventoryResolve(overlord.InventoryRef{At: v4.At.Add(-time.Nanosecond)}); err != nil || n != 3 {
		t.Errorf("just before version 4: %d, %v", n, err)
	}
	if _, err := o.InventoryResolve(overlord.InventoryRef{At: v3.At.Add(-time.Second)}); err == nil || !strings.Contains(err.Error(), "oldest kept is version 3") {
		t.Errorf("before the oldest: %v", err)
	}

	if _, err := o.InventorySnapshot(context.Background(), "nosuch*", overlord.SnapshotOptions{}); !errors.Is(err, overlord.ErrNoMatch) {
		t.Errorf("a target matching nothing: %v, want ErrNoMatch", err)
	}
	if _, err := o.InventorySnapshot(context.Background(), "*", overlord.SnapshotOptions{Keep: -1}); err == nil {
		t.Error("keep -1 accepted")
	}
	if vs, _ := o.InventoryVersions(); len(vs) != 2 || vs[0].Version != 4 {
		t.Errorf("refused snapshots changed the versions: %+v", vs)
	}
}

// The service takes a snapshot when one is due (at once, with none yet)
// and then every InventoryEvery, keeping InventoryKeep versions.
func TestServiceInventory(t *testing.T) {
	f := miniontest.Start(t, miniontest.Config{Minions: 1})
	o := f.Overlord
	svc, err := o.OpenService(context.Background(), overlord.ServiceConfig{InventoryEvery: 50 * time.Millisecond, InventoryKeep: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := svc.Close(ctx); err != nil {
			t.Errorf("closing the service: %v", err)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		vs, err := o.InventoryVersions()
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) > 0 && vs[0].Version >= 3 {
			if len(vs) != 2 || vs[0].Minions != 1 {
				t.Fatalf("versions: %+v, want the newest 2 of 1 minion", vs)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service took no 3 snapshots in 30 s: %+v", vs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
