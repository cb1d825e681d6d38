package cli_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestCertsCommands(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addMinion("web1")
	h.must("ca", "client", "ci-bot", "--bundle-out", filepath.Join(h.out, "ci-bot.pem"))

	out := h.must("certs", "list")
	for _, want := range []string{"NAME", "ci-bot  overlord  signed", "op      overlord  signed", "web1    minion    signed"} {
		if !strings.Contains(out, want) {
			t.Errorf("certs list lacks %q:\n%s", want, out)
		}
	}
	var entries []map[string]any
	if err := json.Unmarshal([]byte(h.must("certs", "list", "-o", "json")), &entries); err != nil || len(entries) != 3 {
		t.Fatalf("certs list -o json: %v %v", entries, err)
	}
	if entries[2]["name"] != "web1" || entries[2]["source"] != "minion add" || entries[2]["serial"] == "" {
		t.Errorf("web1: %v", entries[2])
	}
	if got := strings.TrimSpace(h.must("certs", "list", "--state", "pending", "-o", "json")); got != "[]" {
		t.Errorf("no pending requests: %s", got)
	}
	for _, args := range [][]string{
		{"certs", "list", "--state", "bogus"},
		{"certs", "sign", "web9"},
		{"certs", "reject", "web9"},
		{"certs", "sign"},
	} {
		if r := h.run(args...); r.code != 2 {
			t.Errorf("overlord %s: exit %d, want 2", strings.Join(args, " "), r.code)
		}
	}
	if r := h.run("certs", "sign", "web9"); !strings.Contains(r.err.Error(), "no pending certificate request for web9") {
		t.Errorf("sign web9: %v", r.err)
	}
}

func TestCARevoke(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addMinion("web1")
	bot := filepath.Join(h.out, "ci-bot.pem")
	h.must("ca", "client", "ci-bot", "--bundle-out", bot)

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"ca", "revoke"}, "give NAME or --cert FILE"},
		{[]string{"ca", "revoke", "web1", "--role", "ca"}, "unknown --role"},
		{[]string{"ca", "revoke", "op"}, "the identity this command runs as"},
		{[]string{"ca", "revoke", "nosuch"}, "no certificate recorded for nosuch"},
	} {
		r := h.run(tt.args...)
		if r.code != 2 || r.err == nil || !strings.Contains(r.err.Error(), tt.want) {
			t.Errorf("overlord %s: exit %d, %v; want 2 and %q", strings.Join(tt.args, " "), r.code, r.err, tt.want)
		}
	}
	out := h.must("ca", "revoke", "--cert", bot)
	if !strings.Contains(out, `revoked overlord certificate "ci-bot"`) || !strings.Contains(out, "revocation list 1 signed") {
		t.Errorf("revoke --cert:\n%s", out)
	}
	if r := h.run("--identity", bot, "call", "web1", "test.ping"); r.code != 2 {
		t.Errorf("a call with a revoked identity: exit %d", r.code)
	}
	out = h.must("ca", "revoke", "web1")
	if !strings.Contains(out, "dropped from the registry") || !strings.Contains(out, "revocation list 2 signed") {
		t.Errorf("revoke web1:\n%s", out)
	}
	if list := h.must("minion", "list"); strings.Contains(list, "web1") {
		t.Errorf("web1 still registered:\n%s", list)
	}
	if got := h.must("certs", "list", "--state", "revoked"); strings.Count(got, "revoked") != 2 {
		t.Errorf("certs list --state revoked:\n%s", got)
	}
}
