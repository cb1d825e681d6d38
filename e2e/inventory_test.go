//go:build linux

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

const inventoryPlugin = `#!/bin/sh
case "$1" in
describe) echo '{"doc": "Say hello.", "version": "0.3", "methods": [{"name": "greet", "doc": "Greet.", "params": []}]}' ;;
call) echo '{"hello": true}' ;;
esac
`

// inventory runs 'overlord inventory ARGS...' and returns its stdout and
// exit status.
func inventory(t *testing.T, f *fleet, args ...string) (string, int) {
	t.Helper()
	cmd, stdout, stderr := overlordCmd(f, append([]string{"inventory"}, args...)...)
	code := exitCode(t, cmd)
	if stderr.Len() > 0 {
		t.Logf("inventory %s: stderr: %s", strings.Join(args, " "), stderr)
	}
	return stdout.String(), code
}

// inventoryJSON runs an inventory command with -o json that must exit
// with want and decodes its document.
func inventoryJSON(t *testing.T, f *fleet, want int, args ...string) map[string]any {
	t.Helper()
	out, code := inventory(t, f, append(args, "-o", "json")...)
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != want {
		t.Fatalf("inventory %s -o json: exit %d (want %d), %v\n%s", strings.Join(args, " "), code, want, err, out)
	}
	return doc
}

// TestInventory: real minions, a plugin added on one of them between two
// snapshots: 'inventory diff -o json' shows exactly that minion's new
// module with its checksum, the text diff says it in a line, 'show --at'
// gives each version (by number and by time), and a minion that stops
// keeps its data, marked with the version it is from.
func TestInventory(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2")

	v1 := inventoryJSON(t, f, 0, "snapshot")
	if v1["version"] != 1.0 || v1["minions"] != 2.0 || v1["unreachable"] != 0.0 {
		t.Fatalf("first snapshot: %v", v1)
	}

	mods := filepath.Join(mustMinion(t, f, "web2").dir, "modules.d")
	if err := os.MkdirAll(mods, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mods, "hello"), []byte(inventoryPlugin), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(inventoryPlugin))
	sha := hex.EncodeToString(sum[:])

	out, code := inventory(t, f, "snapshot")
	if code != 0 || !strings.Contains(out, "inventory version 2 (") || !strings.Contains(out, "2 minions, 1 changed since the version before") {
		t.Fatalf("second snapshot: exit %d\n%s", code, out)
	}

	d := inventoryJSON(t, f, 0, "diff")
	want := map[string]any{"web2": map[string]any{
		"change": "changed", "state": "ok",
		"modules": map[string]any{"added": map[string]any{"hello": map[string]any{
			"methods": []any{"greet"}, "plugin": true, "version": "0.3", "sha256": sha,
		}}},
	}}
	if !reflect.DeepEqual(d["minions"], want) || d["old"] != 1.0 || d["new"] != 2.0 {
		got, _ := json.MarshalIndent(d, "", "  ")
		t.Errorf("diff -o json:\n%s\nwant minions exactly web2's hello, sha256 %s", got, sha)
	}
	if s := d["summary"].(map[string]any); s["changed"] != 1.0 || s["minions"] != 2.0 {
		t.Errorf("diff summary: %v", s)
	}

	out, code = inventory(t, f, "diff")
	line := regexp.MustCompile(`(?m)^  \+ module  hello  plugin 0\.3 sha256 ` + sha[:12] + `  greet$`)
	if code != 0 || !strings.Contains(out, "1 of 2 minions changed") || !strings.Contains(out, "\nweb2  changed\n") || !line.MatchString(out) || strings.Contains(out, "web1") {
		t.Errorf("text diff: exit %d\n%s", code, out)
	}

	hello := func(doc map[string]any) any {
		m := doc["minions"].(map[string]any)["web2"].(map[string]any)["modules"].(map[string]any)
		return m["hello"]
	}
	if h := hello(inventoryJSON(t, f, 0, "show", "web2", "--at", "1")); h != nil {
		t.Errorf("show web2 --at 1: hello is there: %v", h)
	}
	v2 := inventoryJSON(t, f, 0, "show", "web2", "--at", "2")
	if h, _ := hello(v2).(map[string]any); h == nil || h["sha256"] != sha {
		t.Errorf("show web2 --at 2: hello = %v, want its sha256 %s", hello(v2), sha)
	}
	// By time: the newest version taken at or before it.
	if doc := inventoryJSON(t, f, 0, "show", "--at", v2["at"].(string)); doc["version"] != 2.0 {
		t.Errorf("show --at %s: version %v, want 2", v2["at"], doc["version"])
	}
	if _, code := inventory(t, f, "show", "--at", "2000-01-01"); code != 2 {
		t.Errorf("show --at before any version: exit %d, want 2", code)
	}

	// web1 stops: recorded unreachable, its data kept from version 2.
	if err := f.stop(mustMinion(t, f, "web1")); err != nil {
		t.Fatal(err)
	}
	v3 := inventoryJSON(t, f, 1, "snapshot", "--timeout", "10s")
	if v3["version"] != 3.0 || v3["unreachable"] != 1.0 {
		t.Errorf("snapshot with web1 down: %v", v3)
	}
	d = inventoryJSON(t, f, 0, "diff")
	w1, _ := d["minions"].(map[string]any)["web1"].(map[string]any)
	if len(d["minions"].(map[string]any)) != 1 || w1["state"] != "unreachable" || w1["old_state"] != "ok" || w1["as_of"] != 2.0 ||
		w1["error"].(map[string]any)["kind"] != "unreachable" {
		t.Errorf("diff with web1 down: %v", d["minions"])
	}
	doc := inventoryJSON(t, f, 0, "show", "web1")
	if m := doc["minions"].(map[string]any)["web1"].(map[string]any); m["facts"] == nil || m["modules"] == nil || m["as_of"] != 2.0 {
		t.Errorf("show web1 while it is down: %v, want version 2's data", m)
	}
	out, _ = inventory(t, f, "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[1], "3 ") || !strings.HasPrefix(lines[3], "1 ") {
		t.Errorf("list:\n%s", out)
	}
}
