//go:build linux

package e2e

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	mcli "github.com/overlordhq/overlord/minion/cli"
	ocli "github.com/overlordhq/overlord/overlord/cli"
)

// TestMakeInstall runs `make install DESTDIR=... PREFIX=/usr` with the
// binaries the tests built, and checks that both binaries, a man page for
// every command and the shell completions land where they belong, and
// that the installed overlord runs from the PATH with its man page.
func TestMakeInstall(t *testing.T) {
	t.Parallel()
	takePlace(t)
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatalf("make install is tested with make: %v", err)
	}
	tmp := t.TempDir()
	bin, dest := filepath.Join(tmp, "bin"), filepath.Join(tmp, "dest")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"overlord", "minion"} {
		copyFile(t, filepath.Join(binDir, b), filepath.Join(bin, b), 0o755)
	}
	cmd := exec.Command("make", "-C", "..", "install", "DESTDIR="+dest, "PREFIX=/usr", "BIN="+bin)
	cmd.Env = append(os.Environ(), binEnv(binDir)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}

	usr := filepath.Join(dest, "usr")
	for _, f := range []string{"bin/overlord", "bin/minion"} {
		fi, err := os.Stat(filepath.Join(usr, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o755 {
			t.Errorf("%s has mode %v, want 0755", f, fi.Mode().Perm())
		}
	}
	for _, f := range []string{
		"share/bash-completion/completions/overlord", "share/bash-completion/completions/minion",
		"share/zsh/site-functions/_overlord", "share/zsh/site-functions/_minion",
		"share/fish/vendor_completions.d/overlord.fish", "share/fish/vendor_completions.d/minion.fish",
	} {
		data, err := os.ReadFile(filepath.Join(usr, f))
		if err != nil {
			t.Fatal(err)
		}
		// The scripts ask the binary itself: dynamic completion.
		if !strings.Contains(string(data), "__complete") {
			t.Errorf("%s does not call __complete", f)
		}
	}
	// The systemd units name the installed binaries, restart on failure,
	// and leave a minion's async jobs alone when it stops.
	for _, u := range []string{"minion", "overlord"} {
		data, err := os.ReadFile(filepath.Join(usr, "lib/systemd/system", u+".service"))
		if err != nil {
			t.Fatal(err)
		}
		unit := string(data)
		var exec []string
		for _, line := range strings.Split(unit, "\n") {
			if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
				exec = strings.Fields(v)
			}
		}
		if len(exec) < 2 || exec[0] != "/usr/bin/"+u || strings.Contains(unit, "@BINDIR@") {
			t.Errorf("%s.service: ExecStart %q, want /usr/bin/%s ...", u, exec, u)
			continue
		}
		if !strings.Contains(unit, "\nRestart=on-failure\n") || !strings.Contains(unit, "\nWantedBy=multi-user.target\n") {
			t.Errorf("%s.service lacks Restart=on-failure or its [Install]:\n%s", u, unit)
		}
		if u == "minion" && !strings.Contains(unit, "\nKillMode=process\n") {
			t.Errorf("minion.service would kill the async jobs' runners on a restart:\n%s", unit)
		}
		// The command line is one the binary takes.
		help := exec[1:]
		help = append(append([]string(nil), help...), "--help")
		cmd := exec2(t, filepath.Join(binDir, u), help...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s.service: %s %q: %v\n%s", u, u, help, err, out)
		}
	}

	// A page for every command a user can run, of both binaries.
	getenv := func(string) string { return "" }
	roots := []*cobra.Command{
		(&ocli.App{Stdout: io.Discard, Stderr: io.Discard, Getenv: getenv}).Root(),
		(&mcli.App{Stdout: io.Discard, Stderr: io.Discard, Getenv: getenv}).Root(),
	}
	var walk func(c *cobra.Command)
	pages := 0
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c.HasParent() {
			return
		}
		page := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1"
		if _, err := os.Stat(filepath.Join(usr, "share/man/man1", page)); err != nil {
			t.Errorf("no man page for %q: %v", c.CommandPath(), err)
		}
		pages++
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	for _, r := range roots {
		walk(r)
	}
	if pages < 40 {
		t.Errorf("checked %d pages; the walk missed commands", pages)
	}
	for _, hidden := range []string{"overlord-job-drive.1", "minion-run-job.1"} {
		if _, err := os.Stat(filepath.Join(usr, "share/man/man1", hidden)); err == nil {
			t.Errorf("a hidden command has a man page: %s", hidden)
		}
	}

	// The installed binary runs from PATH, no path given.
	run := exec.Command("/bin/sh", "-c", "overlord minion list --help")
	run.Env = []string{"PATH=" + filepath.Join(usr, "bin"), "HOME=" + tmp}
	out, err := run.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "overlord minion list [TARGET]") {
		t.Errorf("installed overlord: %v\n%s", err, out)
	}
	page, err := os.ReadFile(filepath.Join(usr, "share/man/man1/overlord-minion-list.1"))
	if err != nil || !strings.Contains(string(page), "without calling them") {
		t.Errorf("overlord-minion-list.1 does not hold the command's help: %v", err)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, mode); err != nil {
		t.Fatal(err)
	}
}

// exec2 is exec.Command with the binaries' environment.
func exec2(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), binEnv(binDir)...)
	return cmd
}
