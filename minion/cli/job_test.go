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
