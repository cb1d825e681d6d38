package cli_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/jobs/jobstest"
	"github.com/overlordhq/overlord/minion"
	"github.com/overlordhq/overlord/minion/miniontest"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/overlord/cli"
)

// harness runs overlord commands in-process against one state directory.
type harness struct {
	t     *testing.T
	dir   string            // --state-dir
	out   string            // where bundles go
	env   map[string]string // what Getenv sees
	stdin string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, dir: filepath.Join(t.TempDir(), "state"), out: t.TempDir(), env: map[string]string{}}
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(h.dir, overlord.DBFile)); err == nil {
			jobstest.Check(t, filepath.Join(h.dir, overlord.DBFile))
		}
	})
	return h
}

// result is what one command did.
type result struct {
	stdout, stderr string
	code           int
	err            error
}

// run runs `overlord --state-dir DIR args...` and returns its output and
// exit code (cli.ExitCode).
func (h *harness) run(args ...string) result {
	h.t.Helper()
	return h.runArgs(append([]string{"--state-dir", h.dir}, args...)...)
}

// runArgs runs `overlord args...` with no --state-dir added.
func (h *harness) runArgs(args ...string) result {
	h.t.Helper()
	var stdout, stderr bytes.Buffer
	app := &cli.App{
		Stdin:  strings.NewReader(h.stdin),
		Stdout: &stdout,
		Stderr: &stderr,
		Getenv: func(k string) string { return h.env[k] },
	}
	root := app.Root()
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cli.ExitCode(err), err: err}
}

// must runs a command that has to succeed and returns its stdout.
func (h *harness) must(args ...string) string {
	h.t.Helper()
	r := h.run(args...)
	if r.code != 0 {
		h.t.Fatalf("overlord %s: exit %d: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.err, r.stdout, r.stderr)
	}
	return r.stdout
}

// addMinion runs `minion add NAME` and serves the minion from its bundle
// on loopback; it returns the bundle's path.
func (h *harness) addMinion(name string) string {
	h.t.Helper()
	ln, err := miniontest.Listen()
	if err != nil {
		h.t.Fatal(err)
	}
	bundle := filepath.Join(h.out, name+".pem")
	if r := h.run("minion", "add", name, "--addr", ln.Addr().String(), "--bundle-out", bundle); r.code != 0 {
		ln.Close()
		h.t.Fatalf("minion add %s: exit %d: %v", name, r.code, r.err)
	}
	b, err := certs.ReadBundle(bundle)
	if err != nil {
		ln.Close()
		h.t.Fatal(err)
	}
	miniontest.Serve(h.t, minion.Config{Bundle: b, Listener: ln})
	return bundle
}

// addDeadMinion registers NAME at a loopback port nobody listens on.
func (h *harness) addDeadMinion(name string) {
	h.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h.must("minion", "add", name, "--addr", addr, "--bundle-out", filepath.Join(h.out, name+".pem"))
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 0},
		{"exit error", &cli.ExitError{Code: 4}, 4},
		{"wrapped exit error", errors.Join(errors.New("x"), &cli.ExitError{Code: 1}), 1},
		{"no match", overlord.ErrNoMatch, 3},
		{"wrapped no match", errors.Join(errors.New("x"), overlord.ErrNoMatch), 3},
		{"anything else", errors.New("x"), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cli.ExitCode(tt.err); got != tt.want {
				t.Errorf("ExitCode = %d, want %d", got, tt.want)
			}
		})
	}
	e := &cli.ExitError{Code: 1}
	if e.Error() != "exit status 1" {
		t.Errorf("Error() = %q", e.Error())
	}
	inner := errors.New("inner")
	if e := (&cli.ExitError{Code: 2, Err: inner}); e.Error() != "inner" || !errors.Is(e, inner) {
		t.Errorf("ExitError with Err: %q", e.Error())
	}
}

// TestMain runs cli.Main as the binary does and checks what reaches
// stderr: Error: and a Try: hint.
func TestMainOutput(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr []string // lines stderr must contain
		quiet  bool     // nothing on stderr
	}{
		{"no store", []string{"minion", "list"}, 2,
			[]string{"Error: no overlord.db in " + dir + " (from --state-dir)", "Try: overlord --state-dir DIR", "overlord ca init only to start a new CA here"}, false},
		{"usage", []string{"call", "*", "ping"}, 2,
			[]string{`Error: want MODULE.METHOD, got "ping" (for example test.ping)`}, false},
		{"unknown flag", []string{"minion", "list", "--nope"}, 2,
			[]string{"Error: unknown flag: --nope"}, false},
		{"unknown command", []string{"frobnicate"}, 2,
			[]string{`Error: unknown command "frobnicate"`}, false},
		{"version", []string{"--version"}, 0, nil, true},
		{"help", []string{"call", "--help"}, 0, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := cli.Main(context.Background(), append([]string{"--state-dir", dir}, tt.args...), strings.NewReader(""), &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, stderr.String())
			}
			for _, want := range tt.stderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr %q lacks line %q", stderr.String(), want)
				}
			}
			if tt.quiet && stderr.Len() > 0 {
				t.Errorf("stderr %q, want nothing", stderr.String())
			}
			if strings.Contains(stderr.String(), "Usage:") {
				t.Error("cobra printed its usage on an error")
			}
		})
	}
}

func TestStateDirFromEnv(t *testing.T) {
	h := newHarness(t)
	h.env["OVERLORD_STATE_DIR"] = h.dir
	if r := h.runArgs("ca", "init", "--name", "op"); r.code != 0 {
		t.Fatalf("ca init: %v", r.err)
	}
	if _, err := os.Stat(filepath.Join(h.dir, certs.CAKeyFile)); err != nil {
		t.Errorf("OVERLORD_STATE_DIR not used: %v", err)
	}
	// --state-dir wins over the environment.
	other := filepath.Join(t.TempDir(), "other")
	if r := h.runArgs("--state-dir", other, "ca", "init", "--name", "op"); r.code != 0 {
		t.Fatalf("ca init: %v", r.err)
	}
	if _, err := os.Stat(filepath.Join(other, certs.CAKeyFile)); err != nil {
		t.Errorf("--state-dir not used: %v", err)
	}
}

func TestCAInit(t *testing.T) {
	h := newHarness(t)
	out := h.must("ca", "init", "--name", "op", "--key-type", "ed25519")
	for _, want := range []string{"CA created in " + h.dir, `overlord identity "op"`, "next: overlord minion add"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout %q lacks %q", out, want)
		}
	}
	modes := map[string]os.FileMode{
		h.dir:                                   0o700,
		filepath.Join(h.dir, certs.CAKeyFile):   0o600,
		filepath.Join(h.dir, overlord.KeyFile):  0o600,
		filepath.Join(h.dir, overlord.DBFile):   0o600,
		filepath.Join(h.dir, overlord.CertFile): 0o644,
	}
	for path, want := range modes {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	r := h.run("ca", "init")
	if r.code != 2 || !strings.Contains(r.err.Error(), "already holds a CA") {
		t.Errorf("second ca init: exit %d, %v", r.code, r.err)
	}

	t.Run("ca client", func(t *testing.T) {
		bundle := filepath.Join(h.out, "ci.pem")
		out := h.must("ca", "client", "ci-bot", "--bundle-out", bundle)
		if !strings.Contains(out, `"ci-bot" written to `+bundle) {
			t.Errorf("stdout %q", out)
		}
		if fi, err := os.Stat(bundle); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("bundle: %v %v", fi, err)
		}
		if r := h.run("ca", "client", "ci-bot"); r.code != 2 || !strings.Contains(r.err.Error(), "--bundle-out") {
			t.Errorf("without --bundle-out: exit %d %v", r.code, r.err)
		}
	})
}

func TestCAInitBadFlags(t *testing.T) {
	h := newHarness(t)
	for _, args := range [][]string{
		{"ca", "init", "--key-type", "rsa"},
		{"ca", "init", "--name", "bad name"},
		{"ca", "init", "extra"},
	} {
		r := h.run(args...)
		if r.code != 2 {
			t.Errorf("%v: exit %d, want 2", args, r.code)
		}
	}
	if _, err := os.Stat(filepath.Join(h.dir, certs.CAKeyFile)); err == nil {
		t.Error("a refused ca init made a CA")
	}
}
