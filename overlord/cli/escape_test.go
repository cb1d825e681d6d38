package cli_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

// hostile is a command whose output would set the terminal's title and
// clear its screen if printed as it is.
const (
	hostile    = `printf '\033]0;pwned\007\033[2J'`
	hostileOut = "\x1b]0;pwned\x07\x1b[2J"
	hostileTxt = "^[]0;pwned^G^[[2J"
)

// terminalSafe fails if out holds a byte or character a terminal acts
// on, other than newline and tab.
func terminalSafe(t *testing.T, what, out string) {
	t.Helper()
	for _, r := range out {
		if (r < 0x20 && r != '\n' && r != '\t') || (r >= 0x7f && r <= 0x9f) || r == 0x202e {
			t.Errorf("%s holds %U:\n%q", what, r, out)
			return
		}
	}
	if strings.ContainsRune(out, '\uFFFD') && !strings.Contains(what, "lossy") {
		t.Errorf("%s replaced bytes with U+FFFD:\n%q", what, out)
	}
}

// commandStdout returns minion's command.run stdout from a job's JSON,
// the exact bytes: stdout_base64 when present, else stdout.
func commandStdout(t *testing.T, doc, minion string) (stdout string, b64 bool) {
	t.Helper()
	var job struct {
		Minions map[string]struct {
			Result struct {
				Stdout       *string `json:"stdout"`
				StdoutBase64 string  `json:"stdout_base64"`
			} `json:"result"`
		} `json:"minions"`
	}
	if err := json.Unmarshal([]byte(doc), &job); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	res := job.Minions[minion].Result
	if res.Stdout == nil {
		t.Fatalf("no stdout for %s in\n%s", minion, doc)
	}
	if res.StdoutBase64 == "" {
		return *res.Stdout, false
	}
	raw, err := base64.StdEncoding.DecodeString(res.StdoutBase64)
	if err != nil {
		t.Fatalf("stdout_base64: %v", err)
	}
	return string(raw), true
}

func jobIDOf(t *testing.T, doc string) string {
	t.Helper()
	var job status.Job
	if err := json.Unmarshal([]byte(doc), &job); err != nil || job.JobID == "" {
		t.Fatalf("no job ID (%v) in\n%s", err, doc)
	}
	return job.JobID
}

// `call` and `job status` in text show a minion's escape sequences as
// ^[ and ^G; -o json carries them exactly, and --raw prints them as they
// are.
func TestTextOutputEscapes(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addMinion("m1")

	text := h.must("call", "m1", "command.run", hostile)
	terminalSafe(t, "call text", text)
	if !strings.Contains(text, "\n"+hostileTxt+"\n") {
		t.Errorf("call text does not show the output as %q:\n%s", hostileTxt, text)
	}

	doc := h.must("call", "m1", "command.run", hostile, "-o", "json")
	if got, b64 := commandStdout(t, doc, "m1"); got != hostileOut || b64 {
		t.Errorf("call -o json: stdout %q (base64 %v), want %q as text", got, b64, hostileOut)
	}
	id := jobIDOf(t, doc)

	raw := h.must("call", "m1", "command.run", hostile, "--raw")
	if !strings.Contains(raw, "\n"+hostileOut+"\n") {
		t.Errorf("call --raw does not print the bytes as they are:\n%q", raw)
	}

	text = h.must("job", "status", id)
	terminalSafe(t, "job status text", text)
	if !strings.Contains(text, "\n"+hostileTxt+"\n") {
		t.Errorf("job status text does not show the output as %q:\n%s", hostileTxt, text)
	}
	if got, _ := commandStdout(t, h.must("job", "status", id, "-o", "json"), "m1"); got != hostileOut {
		t.Errorf("job status -o json: stdout %q, want %q", got, hostileOut)
	}
	if raw := h.must("job", "status", id, "--raw"); !strings.Contains(raw, "\n"+hostileOut+"\n") {
		t.Errorf("job status --raw does not print the bytes as they are:\n%q", raw)
	}

	for _, args := range [][]string{
		{"call", "m1", "command.run", "true", "--raw", "-o", "json"},
		{"job", "status", id, "--raw", "-o", "ndjson"},
	} {
		if r := h.run(args...); r.code != 2 || !strings.Contains(r.err.Error(), "--raw") {
			t.Errorf("%s: exit %d (%v), want 2 and a word on --raw", strings.Join(args, " "), r.code, r.err)
		}
	}
}

// Output that is not valid UTF-8 is marked in JSON, with its exact bytes
// in stdout_base64, shown as \xNN in text and printed as it is by --raw.
func TestTextOutputNotUTF8(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addMinion("m1")
	const cmd = `printf 'ok \377\376'`

	doc := h.must("call", "m1", "command.run", cmd, "-o", "json")
	if got, b64 := commandStdout(t, doc, "m1"); got != "ok \xff\xfe" || !b64 {
		t.Errorf("call -o json: exact stdout %q (base64 %v), want %q from stdout_base64", got, b64, "ok \xff\xfe")
	}
	if !json.Valid([]byte(doc)) {
		t.Errorf("call -o json is not valid JSON:\n%s", doc)
	}
	text := h.must("call", "m1", "command.run", cmd)
	terminalSafe(t, "call text", text)
	if !strings.Contains(text, "\n"+`ok \xff\xfe`+"\n") {
		t.Errorf(`call text does not show the bytes as \xff\xfe:`+"\n%s", text)
	}
	raw := h.must("call", "m1", "command.run", cmd, "--raw")
	if !strings.Contains(raw, "\nok \xff\xfe\n") {
		t.Errorf("call --raw does not print the bytes as they are:\n%q", raw)
	}
}

// Every way a minion's text reaches the text output goes through the
// same rendering: stdout, stderr, an error message, a scalar or JSON
// result, with CR, C1 controls and bidi overrides shown.
func TestTextOutputEveryField(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	s := jobs.New(filepath.Join(h.dir, overlord.DBFile), 0)
	rec := &jobs.Record{ID: "01937a4e-0000-7000-8000-0000000e5c00", Target: "*", Module: "command", Method: "run", CreatedAt: time.Now()}
	results := map[string]status.Result{
		"a": {State: status.Finished, OK: true, Result: json.RawMessage(`{"stdout":"ok\rFAILED\n","stderr":"\u001b[31mred\u009b2J\n","exit_code":0,"duration_ms":1}`)},
		"b": {State: status.Finished, Error: &status.Error{Kind: status.KindModuleError, Message: "bad \u001b]0;x\u0007 news"}},
		"c": {State: status.Finished, OK: true, Result: json.RawMessage("\"file\u202etxt.exe\"")},
		"d": {State: status.Finished, OK: true, Result: json.RawMessage("{\"k\":\"\u009b31m\"}")},
		"e": {State: status.Finished, OK: true, Result: json.RawMessage(`{"stdout":"h\u00e9llo \u65e5\u672c\tx\n","stderr":"","exit_code":0,"duration_ms":1}`)},
		"f": {State: status.Partial, MinionJobID: "j\x1b[2J"},
	}
	names := []string{"a", "b", "c", "d", "e", "f"}
	if err := s.CreateJob(rec, names); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(rec.ID, results, func(r *jobs.Record) error {
		r.State = status.Finished
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r := h.run("job", "status", rec.ID)
	terminalSafe(t, "job status text", r.stdout)
	for _, want := range []string{
		"\nok^MFAILED\na stderr:\n" + `^[[31mred\u009b2J` + "\n",
		"b: ERROR module_error: bad ^[]0;x^G news\n",
		`c: "file\u202etxt.exe"` + "\n",
		"\n" + `  "k": "\u009b31m"` + "\n",
		"\nhéllo 日本\tx\n",
		"f: PARTIAL (minion job j^[[2J)\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("job status text lacks %q:\n%s", want, r.stdout)
		}
	}
	raw := h.run("job", "status", rec.ID, "--raw")
	for _, want := range []string{"ok\rFAILED", "\x1b[31mred\u009b2J", "bad \x1b]0;x\x07 news", "file\u202etxt.exe"} {
		if !strings.Contains(raw.stdout, want) {
			t.Errorf("job status --raw lacks %q:\n%q", want, raw.stdout)
		}
	}
	if r := h.run("job", "status", rec.ID, "-o", "json"); !bytes.Contains([]byte(r.stdout), []byte(`"ok\rFAILED\n"`)) {
		t.Errorf("job status -o json changed the output:\n%s", r.stdout)
	}
}
