package minion

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/status"
)

func TestACL(t *testing.T) {
	dir := t.TempDir()
	a := newACL(dir)
	write := func(s string) {
		t.Helper()
		path := filepath.Join(dir, ACLFile)
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		// Make the change visible even within one mtime tick.
		future := time.Now().Add(time.Duration(len(s)) * time.Second)
		os.Chtimes(path, future, future)
	}
	check := func(who, call string, allowed bool) {
		t.Helper()
		mod, meth, _ := strings.Cut(call, ".")
		err := a.allow(who, mod, meth)
		if allowed != (err == nil) {
			t.Errorf("%s calling %s: %v, want allowed=%v", who, call, err, allowed)
		}
		if err != nil && status.KindOf(err) != status.KindDenied {
			t.Errorf("%s calling %s: kind %s, want denied", who, call, status.KindOf(err))
		}
	}

	// No file: everyone may call anything.
	check("ci-bot", "command.run", true)

	write("# the CI may only look\nci-bot: test.* facts.*\nops: *\n")
	check("ci-bot", "test.ping", true)
	check("ci-bot", "facts.get", true)
	check("ci-bot", "command.run", false)
	check("ops", "command.run", true)
	check("someone", "command.run", true) // no line, no default

	// Reloaded without a restart; a default for everyone else.
	write("ci-bot: test.ping\n*: test.* system.list_modules\n")
	check("ci-bot", "test.echo", false)
	check("someone", "test.echo", true)
	check("someone", "command.run", false)
	check("someone", "file.cp", false)

	// An identity with an empty line may call nothing.
	write("ci-bot:\n")
	check("ci-bot", "test.ping", false)

	// A broken file refuses everything, saying why.
	write("ci-bot test.*\n")
	err := a.allow("ops", "test", "ping")
	if status.KindOf(err) != status.KindDenied || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("broken acl.conf: %v, want denied naming line 1", err)
	}
	for _, bad := range []string{"x: [\n", "x: nodot\n", "a: test.*\na: facts.*\n", "bad name!: test.*\n"} {
		write(bad)
		if a.allow("x", "test", "ping") == nil {
			t.Errorf("acl.conf %q accepted", bad)
		}
	}
	// Removed: back to full access.
	os.Remove(filepath.Join(dir, ACLFile))
	check("ci-bot", "command.run", true)
}

func TestAuditLog(t *testing.T) {
	dir := t.TempDir()
	a, err := openAudit(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, outcome := range []string{"ok", "denied", "ok"} {
		e := AuditEntry{Identity: "ops", RPC: "Minion.Call", Call: "test.ping", Outcome: outcome, ArgsSHA256: argsDigest(map[string]any{"n": i}, nil)}
		if err := a.record(e); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	if fi, _ := os.Stat(filepath.Join(dir, AuditFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("audit.log mode %v, want 0600", fi.Mode().Perm())
	}
	es, err := ReadAudit(dir, 2)
	if err != nil || len(es) != 2 || es[0].Outcome != "denied" || es[1].Outcome != "ok" || es[0].Time.IsZero() {
		t.Fatalf("last 2 entries: %+v, %v", es, err)
	}
	if es[0].ArgsSHA256 == es[1].ArgsSHA256 || len(es[0].ArgsSHA256) != 64 {
		t.Errorf("digests %q %q: want distinct SHA-256s for distinct arguments", es[0].ArgsSHA256, es[1].ArgsSHA256)
	}
	if argsDigest(map[string]any{"a": 1, "b": 2}, nil) != argsDigest(map[string]any{"b": 2, "a": 1}, nil) {
		t.Error("the digest depends on map order")
	}
}

// acl.conf replaced or rewritten with the same size and modification
// time is read again: the inode or the change time tells.
func TestACLReloadSameSizeAndMtime(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ACLFile)
	a := newACL(dir)
	stamp := time.Now().Add(-time.Hour).Truncate(time.Second)
	write := func(file, content string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(file, stamp, stamp); err != nil {
			t.Fatal(err)
		}
	}
	write(path, "ops: test.*\n")
	if err := a.allow("ops", "test", "ping"); err != nil {
		t.Fatal(err)
	}
	// Replaced by rename: another inode.
	tmp := filepath.Join(dir, "acl.new")
	write(tmp, "ops: file.*\n")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if a.allow("ops", "test", "ping") == nil {
		t.Error("acl.conf replaced (same size and mtime): the old rules still apply")
	}
	// Rewritten in place: the same inode, a later change time.
	write(path, "ops: test.*\n")
	if err := a.allow("ops", "test", "ping"); err != nil {
		t.Errorf("acl.conf rewritten in place (same size and mtime): %v; the old rules still apply", err)
	}
}

// Identity names match acl.conf's lines whatever their case.
func TestACLNamesIgnoreCase(t *testing.T) {
	dir := t.TempDir()
	a := newACL(dir)
	if err := os.WriteFile(filepath.Join(dir, ACLFile), []byte("CI-Bot: test.*\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"ci-bot", "CI-BOT", "CI-Bot"} {
		if a.allow(who, "command", "run") == nil {
			t.Errorf("%s may call command.run past the line for CI-Bot", who)
		}
		if err := a.allow(who, "test", "ping"); err != nil {
			t.Errorf("%s calling test.ping: %v", who, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ACLFile), []byte("ops: test.*\nOPS: command.*\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(dir, ACLFile), future, future)
	if err := a.allow("ops", "test", "ping"); err == nil || !strings.Contains(err.Error(), "has a line already") {
		t.Errorf("two lines for ops and OPS: %v, want the file refused", err)
	}
}
