package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/minion"
)

// TestAuditVia: minion audit shows the gateway a call came through, and
// "-" for a direct call; -o json keeps the field as stored.
func TestAuditVia(t *testing.T) {
	state := t.TempDir()
	log := `{"time":"2026-12-05T10:00:00Z","identity":"op","remote":"127.0.0.1:40000","rpc":"Minion.Call","call":"test.ping","outcome":"ok"}
{"time":"2026-12-05T10:00:01Z","identity":"op","via":"gw-a","remote":"127.0.0.1:40001","rpc":"Minion.Call","call":"command.run","outcome":"denied"}
{"time":"2026-12-05T10:00:02Z","identity":"","via":"gw-a","remote":"127.0.0.1:40001","rpc":"refused","outcome":"denied","message":"denied: a gateway must name the identity it calls for"}
`
	if err := os.WriteFile(filepath.Join(state, minion.AuditFile), []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MINION_STATE_DIR": state}
	out, _, err := run(t, env, "audit")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := [][]string{
		{"TIME", "IDENTITY", "VIA", "REMOTE", "CALL", "OUTCOME", "JOB", "ARGS"},
		{"op", "-", "127.0.0.1:40000", "test.ping", "ok", "-", "-"},
		{"op", "gw-a", "127.0.0.1:40001", "command.run", "denied", "-", "-"},
		{"-", "gw-a", "127.0.0.1:40001", "refused", "denied", "-", "-"},
	}
	if len(lines) != len(want) {
		t.Fatalf("minion audit:\n%s\nwant %d lines", out, len(want))
	}
	for i, w := range want {
		fields := strings.Fields(lines[i])
		if i > 0 {
			fields = fields[2:] // date and time
		}
		if strings.Join(fields, " ") != strings.Join(w, " ") {
			t.Errorf("line %d: %q, want %q", i, lines[i], strings.Join(w, " "))
		}
	}
	js, _, err := run(t, env, "audit", "-o", "json")
	if err != nil || !strings.Contains(js, `"via":"gw-a"`) || strings.Count(js, `"via"`) != 2 {
		t.Errorf("minion audit -o json: %v\n%s", err, js)
	}
}
