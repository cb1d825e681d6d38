package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/overlordhq/overlord/overlord/cli"
)

// Newcomers' trip-ups in text output and messages
// (/work/shared/design/TRIAL.md), one test each.

// `overlord cp` prints one line per minion: path, size, sha256 prefix,
// mode; not a JSON object over six lines.
func TestCpOneLinePerMinion(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addMinion("m1")
	src := filepath.Join(t.TempDir(), "conf")
	if err := os.WriteFile(src, []byte("hello\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "conf.copy")
	out := h.must("cp", src, "m1:"+dest)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	// sha256("hello\n") = 5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03
	want := regexp.MustCompile(`^m1: ` + regexp.QuoteMeta(dest) + `  6 bytes  sha256 5891b5b522d5  mode 0640$`)
	if len(lines) != 2 || !want.MatchString(lines[0]) || !strings.HasPrefix(lines[1], "1 minion: 1 ok") {
		t.Errorf("cp printed:\n%s\nwant one line per minion matching %s, then the summary", out, want)
	}
}

// `overlord minion facts` keeps its columns aligned when a minion in the
// middle of the table is unreachable.
func TestFactsTableAlignedWithFailure(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addMinion("a1")
	h.addDeadMinion("b2")
	h.addMinion("c3")
	r := h.run("minion", "facts", "*")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1 (b2 is down): %v\n%s", r.code, r.err, r.stdout)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header and 3 rows:\n%s", r.stdout)
	}
	// Where each column starts in the header.
	var starts []int
	for i := 1; i < len(lines[0]); i++ {
		if lines[0][i-1] == ' ' && lines[0][i] != ' ' {
			starts = append(starts, i)
		}
	}
	if len(starts) != 6 {
		t.Fatalf("header %q: want 7 columns", lines[0])
	}
	for _, l := range lines[1:] {
		for _, s := range starts {
			if len(l) <= s || l[s-1] != ' ' || l[s] == ' ' {
				t.Errorf("columns not aligned with the header:\n%s", r.stdout)
				return
			}
		}
	}
	if !strings.HasPrefix(lines[2], "b2 ") || !strings.Contains(lines[2], "ERROR unreachable:") {
		t.Errorf("b2's row %q does not say it is unreachable", lines[2])
	}
}

// `overlord modules NAME` wraps the docs to 80 columns when stdout is not
// a terminal, losing no word.
func TestModulesWrapped(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addMinion("m1")
	out := h.must("modules", "m1", "facts")
	for _, l := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(l); n > 80 && strings.Contains(strings.TrimSpace(l), " ") {
			t.Errorf("line of %d characters, want at most 80:\n%s", n, l)
		}
	}
	// Every fact's name is still listed (facts.get's key doc).
	for _, fact := range []string{"os_version", "memory_bytes", "ip_addresses"} {
		if !strings.Contains(out, fact) {
			t.Errorf("wrapped text lost %q:\n%s", fact, out)
		}
	}
}

// An unknown command like `overlord cmd` suggests `call`, not `ca` and
// `cp`.
func TestSuggestCall(t *testing.T) {
	for _, word := range []string{"cmd", "run", "exec", "command"} {
		t.Run(word, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := cli.Main(context.Background(), []string{word}, strings.NewReader(""), &stdout, &stderr)
			got := stderr.String()
			if code != 2 || !strings.Contains(got, "Did you mean this?\n\tcall\n") {
				t.Errorf("exit %d, stderr %q; want 2 and a suggestion of call", code, got)
			}
			if strings.Contains(got, "\tca\n") || strings.Contains(got, "\tcp\n") {
				t.Errorf("stderr %q suggests ca or cp", got)
			}
		})
	}
}

// Without --state-dir or OVERLORD_STATE_DIR (as under sudo), a missing
// overlord.db names the directory looked in and why, and offers
// --state-dir before 'ca init'.
func TestNoStoreNamesTheDirectory(t *testing.T) {
	xdg := t.TempDir()
	t.Setenv("XDG_STATE_HOME", xdg)
	t.Setenv("OVERLORD_STATE_DIR", "")
	var stdout, stderr bytes.Buffer
	code := cli.Main(context.Background(), []string{"job", "list"}, strings.NewReader(""), &stdout, &stderr)
	got := stderr.String()
	want := "Error: no overlord.db in " + filepath.Join(xdg, "overlord") + " (the default: neither --state-dir nor OVERLORD_STATE_DIR is set)\n"
	if code != 2 || !strings.HasPrefix(got, want) {
		t.Errorf("exit %d, stderr:\n%s\nwant 2 and %q", code, got, want)
	}
	stateDir, caInit := strings.Index(got, "Try: overlord --state-dir DIR"), strings.Index(got, "overlord ca init")
	if stateDir < 0 || caInit < stateDir || !strings.Contains(got, "OVERLORD_STATE_DIR=DIR") {
		t.Errorf("stderr:\n%s\nwant a Try: line with --state-dir and OVERLORD_STATE_DIR before ca init", got)
	}

	t.Setenv("OVERLORD_STATE_DIR", filepath.Join(xdg, "elsewhere"))
	stderr.Reset()
	cli.Main(context.Background(), []string{"job", "list"}, strings.NewReader(""), &stdout, &stderr)
	if want := "no overlord.db in " + filepath.Join(xdg, "elsewhere") + " (from OVERLORD_STATE_DIR)"; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
}
