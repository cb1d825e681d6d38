package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// spoolJob writes a job's spool directory as a daemon and its runner
// leave it: spec.json, and the other files given.
func spoolJob(t *testing.T, stateDir, id string, files map[string]string) {
	t.Helper()
	dir := filepath.Join(stateDir, "spool", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	files["spec.json"] = `{"job_id":"` + id + `","origin_job_id":"o-` + id + `","caller":"overlord","module":"command","method":"run","created_at":"2026-12-04T10:00:00Z"}`
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestJobShowSaysWhatHappened: minion job list and show say a job's
// error, an unreadable result.json as unreadable, and a job whose runner
// is gone without a result as lost (as the daemon records it).
func TestJobShowSaysWhatHappened(t *testing.T) {
	state := t.TempDir()
	spoolJob(t, state, "01-full", map[string]string{
		"result.json": `{"ok":false,"error":{"kind":"internal","message":"the job's output could not be kept in the spool: write output: no space left on device"},"finished_at":"2026-12-04T10:00:01Z"}`,
		"output":      "xxxx",
	})
	spoolJob(t, state, "02-unreadable", map[string]string{"result.json": `{"ok": tr`})
	spoolJob(t, state, "03-gone", map[string]string{"pid": "4242\n", "runner.lock": ""})
	spoolJob(t, state, "04-old", map[string]string{}) // an older daemon's job: no lock, no result
	env := map[string]string{"MINION_STATE_DIR": state}
	for _, tc := range []struct{ id, want string }{
		{"01-full", "error:    internal: the job's output could not be kept in the spool: write output: no space left on device"},
		{"02-unreadable", "error:    internal: the job's result.json is unreadable"},
		{"03-gone", "error:    lost: the job's runner (pid 4242) ended without a result"},
		{"04-old", "state:    RUNNING"},
	} {
		out, _, err := run(t, env, "job", "show", tc.id)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("job show %s: %v\n%s\nwant %q", tc.id, err, out, tc.want)
		}
	}
	out, _, err := run(t, env, "job", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"01-full   FINISHED  internal", "02-unreadable  FINISHED  internal", "03-gone   FINISHED  lost", "04-old    RUNNING   -"} {
		fields := strings.Fields(want)
		found := false
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == fields[0] && f[1] == fields[1] && f[2] == fields[2] {
				found = true
			}
		}
		if !found {
			t.Errorf("job list has no line %q:\n%s", strings.Join(fields, " "), out)
		}
	}
}

// TestJobOutputFormats: the minion's commands take -o text|json as the
// overlord's do (--json stays, the same as -o json), and text output shows
// a job's control characters instead of sending them to the terminal.
func TestJobOutputFormats(t *testing.T) {
	state := t.TempDir()
	spoolJob(t, state, "01-esc", map[string]string{
		"result.json": `{"ok":true,"result":{"stdout":"\u001b]0;pwned\u0007"},"finished_at":"2026-12-04T10:00:01Z"}`,
		"output":      "\x1b]0;pwned\x07\x1b[2J",
	})
	env := map[string]string{"MINION_STATE_DIR": state}
	out, _, err := run(t, env, "job", "show", "01-esc")
	if err != nil || strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, "^[]0;pwned^G^[[2J") {
		t.Errorf("job show (text) of output with escapes: %v\n%q\nwant them shown as ^[ and ^G", err, out)
	}
	for _, cmd := range [][]string{{"job", "show", "01-esc"}, {"job", "list"}, {"audit"}} {
		viaO, _, errO := run(t, env, append(cmd, "-o", "json")...)
		viaJSON, _, errJ := run(t, env, append(cmd, "--json")...)
		if errO != nil || errJ != nil || viaO != viaJSON {
			t.Errorf("%v -o json (%v) and --json (%v) differ:\n%s\n%s", cmd, errO, errJ, viaO, viaJSON)
		}
		if _, _, err := run(t, env, append(cmd, "-o", "yaml")...); err == nil || !strings.Contains(err.Error(), "want text or json") {
			t.Errorf("%v -o yaml: %v, want an error naming text and json", cmd, err)
		}
	}
	if out, _, _ := run(t, env, "job", "show", "01-esc", "-o", "json"); !strings.Contains(out, `\u001b]0;pwned\u0007`) {
		t.Errorf("job show -o json changed the output's bytes:\n%s", out)
	}
}
