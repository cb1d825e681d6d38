package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/overlord/cli"
	"github.com/overlordhq/overlord/status"
)

// runTTY runs a command as runArgs does, with IsTerminal saying yes for
// the streams in tty.
func (h *harness) runTTY(ttyOut, ttyErr bool, args ...string) result {
	h.t.Helper()
	var stdout, stderr bytes.Buffer
	app := &cli.App{
		Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr,
		Getenv: func(k string) string { return h.env[k] },
		IsTerminal: func(w io.Writer) bool {
			return w == io.Writer(&stdout) && ttyOut || w == io.Writer(&stderr) && ttyErr
		},
	}
	root := app.Root()
	root.SetArgs(append([]string{"--state-dir", h.dir}, args...))
	err := root.ExecuteContext(context.Background())
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cli.ExitCode(err), err: err}
}

func threeMinions(t *testing.T) *harness {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	for _, n := range []string{"web1", "web2", "web3"} {
		h.addMinion(n)
	}
	return h
}

func TestGroupAndPrefix(t *testing.T) {
	h := threeMinions(t)
	out := h.must("call", "web*", "command.run", "echo same; echo line2", "-b")
	want := "web[1-3] (3): exit 0\nsame\nline2\n3 minions: 3 ok, 0 failed"
	if !strings.HasPrefix(out, want) {
		t.Errorf("call -b:\n%s\nwant it to begin with:\n%s", out, want)
	}
	id := strings.TrimSuffix(strings.Fields(out[strings.Index(out, "(job ")+5:])[0], ",")
	if got := h.must("job", "status", id, "--group"); !strings.HasPrefix(got, want) {
		t.Errorf("job status --group:\n%s", got)
	}

	out = h.must("call", "web*", "command.run", "echo one; echo two >&2", "--prefix")
	for _, n := range []string{"web1", "web2", "web3"} {
		for _, l := range []string{n + ": one\n", n + " stderr: two\n"} {
			if !strings.Contains(out, l) {
				t.Errorf("call --prefix lacks %q:\n%s", l, out)
			}
		}
	}

	for _, args := range [][]string{
		{"call", "web*", "test.ping", "-b", "-o", "json"},
		{"call", "web*", "test.ping", "--prefix", "-o", "ndjson"},
		{"call", "web*", "test.ping", "--prefix", "-b"},
		{"call", "web*", "test.ping", "--progress", "--no-progress"},
		{"call", "web*", "test.ping", "--async", "--output-dir", t.TempDir()},
		{"job", "status", id, "-b", "-o", "yaml"},
	} {
		r := h.run(args...)
		if r.code != 2 || r.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q, want 2 and nothing", strings.Join(args, " "), r.code, r.stdout)
		}
	}
	if jobs := h.must("job", "list", "-o", "json"); strings.Count(jobs, `"job_id"`) != 2 {
		t.Errorf("refused calls were recorded:\n%s", jobs)
	}
}

func TestOutputDir(t *testing.T) {
	h := threeMinions(t)
	dir := filepath.Join(t.TempDir(), "new", "out")
	r := h.run("call", "web*", "command.run", `printf o-; echo e >&2`, "--output-dir", dir, "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %v\n%s", r.code, r.err, r.stderr)
	}
	var job status.Job
	if err := json.Unmarshal([]byte(r.stdout), &job); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("--output-dir: %v, mode %v; want made 0700", err, fi)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 9 {
		t.Errorf("%d files in %s, want 9: %v", len(entries), dir, entries)
	}
	for name, res := range job.Minions {
		var c struct{ Stdout, Stderr string }
		_ = json.Unmarshal(res.Result, &c)
		for ext, want := range map[string]string{".stdout": c.Stdout, ".stderr": c.Stderr} {
			p := filepath.Join(dir, name+ext)
			got, err := os.ReadFile(p)
			if err != nil || string(got) != want || !strings.HasPrefix(want, "o-") && ext == ".stdout" {
				t.Errorf("%s: %q (%v), want %q", p, got, err, want)
			}
			if fi, _ := os.Stat(p); fi == nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600", p, fi)
			}
		}
		var entry status.Result
		raw, err := os.ReadFile(filepath.Join(dir, name+".json"))
		var got, want bytes.Buffer
		if err != nil || json.Unmarshal(raw, &entry) != nil || entry.OK != res.OK ||
			json.Compact(&got, entry.Result) != nil || json.Compact(&want, res.Result) != nil || got.String() != want.String() {
			t.Errorf("%s.json: %s (%v), want the entry %+v", name, raw, err, res)
		}
	}
	// job status writes them too
	dir2 := t.TempDir()
	h.run("job", "status", job.JobID, "--output-dir", dir2)
	if got, err := os.ReadFile(filepath.Join(dir2, "web3.stdout")); err != nil || string(got) != "o-" {
		t.Errorf("job status --output-dir: web3.stdout %q (%v)", got, err)
	}
	// a non-command result: the value; a failure: its output
	dir3 := t.TempDir()
	h.must("call", "web1", "test.ping", "--output-dir", dir3)
	if got, err := os.ReadFile(filepath.Join(dir3, "web1.stdout")); err != nil || string(got) != "true\n" {
		t.Errorf("test.ping --output-dir: web1.stdout %q (%v)", got, err)
	}
	if r := h.run("call", "web2", "command.run", "echo bad >&2; exit 3", "--output-dir", dir3); r.code != 1 {
		t.Errorf("failing command: exit %d", r.code)
	}
	if got, err := os.ReadFile(filepath.Join(dir3, "web2.stderr")); err != nil || string(got) != "bad\n" {
		t.Errorf("failing command --output-dir: web2.stderr %q (%v)", got, err)
	}
	// a file where the directory should be: refused before anything runs
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := h.run("call", "web1", "test.ping", "--output-dir", file); r.code != 2 || !strings.Contains(r.err.Error(), "--output-dir") {
		t.Errorf("--output-dir on a file: exit %d (%v), want 2", r.code, r.err)
	}
}

// The progress line: on stderr when it is a terminal, with done/total
// and the job ID, gone when the command ends; results still on stdout
// when stdout is not a terminal; none when stderr is not a terminal or
// with --no-progress; --progress forces it.
func TestProgressLine(t *testing.T) {
	h := threeMinions(t)
	r := h.runTTY(false, true, "call", "web*", "command.run", "echo hi", "-o", "json")
	var job status.Job
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &job) != nil {
		t.Fatalf("exit %d (%v); stdout not one JSON document:\n%s", r.code, r.err, r.stdout)
	}
	if !strings.Contains(r.stderr, "/3 done") || !strings.Contains(r.stderr, job.JobID) {
		t.Errorf("stderr (a terminal) has no progress line with done/total and the job ID:\n%q", r.stderr)
	}
	if !strings.HasSuffix(r.stderr, "\x1b[J") {
		t.Errorf("the progress line is not erased at the end:\n%q", r.stderr)
	}

	// stdout the same terminal: results printed above the line
	r = h.runTTY(true, true, "call", "web*", "command.run", "echo hi")
	if !strings.Contains(r.stdout, "3 minions: 3 ok") || strings.Contains(r.stdout, "web1:") {
		t.Errorf("stdout: %q; want the summary only, the results through the progress line", r.stdout)
	}
	if strings.Count(r.stderr, "\nhi\n") != 3 {
		t.Errorf("the results are not printed above the line:\n%q", r.stderr)
	}

	for _, c := range []struct {
		tty  bool
		args []string
	}{{false, nil}, {true, []string{"--no-progress"}}} {
		r = h.runTTY(false, c.tty, append([]string{"call", "web*", "test.ping"}, c.args...)...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("stderr a terminal %v, %v: exit %d, stderr %q; want nothing", c.tty, c.args, r.code, r.stderr)
		}
	}
	r = h.runTTY(false, false, "call", "web*", "test.ping", "--progress")
	if !strings.Contains(r.stderr, "3/3 done: 3 ok") && !strings.Contains(r.stderr, "/3 done") {
		t.Errorf("--progress on a pipe: stderr %q", r.stderr)
	}
}
