package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCAClientNameInUse: an identity name is one identity. A second
// certificate for a name in use (whatever its case, the state directory's
// own identity included) is refused, saying how to free the name, and
// nothing is written; once every certificate for it is revoked, the name
// can be issued again.
func TestCAClientNameInUse(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	bundle := func(name string) string { return filepath.Join(h.out, name+".pem") }

	h.must("ca", "client", "ops", "--bundle-out", bundle("ops1"))
	for _, tc := range []struct{ name, holder string }{
		{"ops", "ops"},
		{"OPS", "ops"},
		{"Ops", "ops"},
		{"op", "op"}, // the overlord's own identity
		{"OP", "op"},
	} {
		out := bundle(tc.name + "-second")
		r := h.run("ca", "client", tc.name, "--bundle-out", out)
		if r.code != 2 || r.err == nil {
			t.Errorf("ca client %s: exit %d, %v; want exit 2", tc.name, r.code, r.err)
			continue
		}
		msg := r.err.Error()
		for _, want := range []string{"name in use", `identity "` + tc.holder + `"`, "overlord ca revoke " + tc.holder} {
			if !strings.Contains(msg, want) {
				t.Errorf("ca client %s: error %q does not say %q", tc.name, msg, want)
			}
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("ca client %s: refused, yet wrote %s", tc.name, out)
		}
	}
	if out := h.must("certs", "list"); strings.Count(strings.ToLower(out), "ops") != 1 {
		t.Errorf("certs list after the refusals: want one certificate named ops:\n%s", out)
	}

	// A bundle that cannot be written leaves the name free.
	h.must("ca", "client", "ci", "--bundle-out", bundle("taken"))
	if r := h.run("ca", "client", "ci2", "--bundle-out", bundle("taken")); r.code != 2 || !strings.Contains(r.err.Error(), "exists") {
		t.Errorf("ca client onto an existing file: exit %d, %v", r.code, r.err)
	}
	if r := h.run("ca", "client", "ci2", "--bundle-out", filepath.Join(bundle("taken"), "in-a-file.pem")); r.code != 2 {
		t.Errorf("ca client under a file: exit %d, %v", r.code, r.err)
	}
	h.must("ca", "client", "ci2", "--bundle-out", bundle("ci2"))

	// Revoked (by any case of its name), the name is free again.
	h.must("ca", "revoke", "OPS")
	if out := h.must("ca", "client", "Ops", "--bundle-out", bundle("ops2")); !strings.Contains(out, `"Ops" written`) {
		t.Errorf("ca client Ops after revoking ops: %q", out)
	}
}
