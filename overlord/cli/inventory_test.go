package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/overlord"
)

// The inventory commands in-process, with one live minion and one that
// never answers: exit codes, formats and refusals.
func TestInventoryCommands(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init")
	h.addMinion("web1")
	h.addDeadMinion("web2")

	if out := h.must("inventory", "list"); strings.TrimSpace(out) != "VERSION  TAKEN  TARGET  MINIONS  UNREACHABLE  CHANGED  SIZE" {
		t.Errorf("list of none:\n%s", out)
	}
	if r := h.run("inventory", "diff"); r.code != 2 || !strings.Contains(r.err.Error(), "no version yet") || r.stdout != "" {
		t.Errorf("diff of none: exit %d, %v, stdout %q", r.code, r.err, r.stdout)
	}

	r := h.run("inventory", "snapshot", "--timeout", "5s")
	if r.code != 1 || !strings.Contains(r.stdout, "inventory version 1 (") ||
		!strings.Contains(r.stdout, "web2: UNREACHABLE (unreachable: ") || !strings.Contains(r.stdout, "no data recorded yet") {
		t.Errorf("snapshot with web2 down: exit %d, %v\n%s", r.code, r.err, r.stdout)
	}
	r = h.run("inventory", "snapshot", "--timeout", "5s", "-o", "json")
	var v overlord.InventoryVersion
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != 1 || v.Version != 2 || v.Unreachable != 1 || v.Changed != 0 {
		t.Errorf("snapshot -o json: exit %d, %+v, %v\n%s", r.code, v, err, r.stdout)
	}

	var d overlord.InventoryDiff
	if err := json.Unmarshal([]byte(h.must("inventory", "diff", "-o", "json")), &d); err != nil {
		t.Fatal(err)
	}
	if w2, ok := d.Minions["web2"]; len(d.Minions) != 1 || !ok || w2.Change != overlord.InventoryUnchanged || w2.State != overlord.InventoryUnreachable || w2.AsOf != 0 {
		t.Errorf("diff: %+v, want web2 alone, still unreachable, no data", d.Minions)
	}
	if out := h.must("inventory", "diff", "1", "--exit-code"); !strings.Contains(out, "web2  still UNREACHABLE") {
		t.Errorf("text diff:\n%s", out)
	}
	if r := h.run("inventory", "snapshot", "web1"); r.code != 0 {
		t.Errorf("snapshot of web1 alone: exit %d (web2's entry is kept, not asked)\n%s", r.code, r.stdout)
	}

	var inv overlord.Inventory
	if err := json.Unmarshal([]byte(h.must("inventory", "show", "web1", "--at", "1", "-o", "json")), &inv); err != nil {
		t.Fatal(err)
	}
	if m := inv.Minions["web1"]; inv.Version != 1 || len(inv.Minions) != 1 || m.State != overlord.InventoryOK || m.Modules["test"].Methods == nil {
		t.Errorf("show web1 --at 1: %+v", inv)
	}
	if out := h.must("inventory", "show", "web*", "-o", "yaml"); !strings.Contains(out, "version: 3") || !strings.Contains(out, "web2:") {
		t.Errorf("show -o yaml:\n%s", out)
	}
	out := h.must("inventory", "show")
	if !strings.Contains(out, "web1  ok") || !strings.Contains(out, "web2  kept (unreachable)") {
		t.Errorf("show:\n%s", out)
	}
	if out := h.must("inventory", "show", "web1"); !strings.Contains(out, "  facts:") || !strings.Contains(out, "    test") {
		t.Errorf("show web1:\n%s", out)
	}

	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"inventory", "show", "nosuch"}, 3, "no minion nosuch"},
		{[]string{"inventory", "show", "--at", "yesterday"}, 2, "bad inventory version"},
		{[]string{"inventory", "show", "--at", "99"}, 2, "not found"},
		{[]string{"inventory", "show", "[x"}, 2, "bad NAME pattern"},
		{[]string{"inventory", "diff", "0"}, 2, "numbered from 1"},
		{[]string{"inventory", "diff", "1", "2", "3"}, 2, "accepts at most 2 arg"},
		{[]string{"inventory", "snapshot", "--keep", "0"}, 2, "--keep"},
		{[]string{"inventory", "snapshot", "--keep", "-1"}, 2, "--keep"},
		{[]string{"inventory", "snapshot", "nosuch"}, 3, "matched no minion"},
		{[]string{"inventory", "list", "-o", "ndjson"}, 2, "unknown output format"},
		{[]string{"inventory", "bogus"}, 2, "unknown command"},
		{[]string{"serve", "--inventory-keep", "0"}, 2, "--inventory-keep"},
		{[]string{"serve", "--inventory-keep", "-1"}, 2, "--inventory-keep"},
		{[]string{"serve", "--inventory-every", "-1s"}, 2, "--inventory-every"},
	} {
		r := h.run(tt.args...)
		if r.code != tt.code || r.err == nil || !strings.Contains(r.err.Error(), tt.msg) {
			t.Errorf("%s: exit %d, %v; want %d saying %q", strings.Join(tt.args, " "), r.code, r.err, tt.code, tt.msg)
		}
	}
	if vs, _ := overlord.New(h.dir, "", 0, nil).InventoryVersions(); len(vs) != 3 {
		t.Errorf("refused commands changed the versions: %d of them, want 3", len(vs))
	}
}
