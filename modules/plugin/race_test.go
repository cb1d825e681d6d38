package plugin_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/builtin"
	"github.com/overlordhq/overlord/modules/plugin"
)

// swapperEnv set to a directory makes the test binary the attacker of
// TestPluginSwapRace instead of running tests: it swaps the files good
// and evil in that directory by renames until it is killed.
const swapperEnv = "PLUGIN_TEST_SWAPPER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(swapperEnv); dir != "" {
		swapLoop(dir, nil)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// swapLoop renames evil over good and back in dir, keeping the real good
// aside meanwhile, until stop is closed (for ever if stop is nil). It
// writes "ready\n" to stdout after its first round.
func swapLoop(dir string, stop <-chan struct{}) {
	good, evil, aside := filepath.Join(dir, "good"), filepath.Join(dir, "evil"), filepath.Join(dir, "aside")
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		os.Rename(good, aside)
		os.Rename(evil, good)
		os.Rename(good, evil)
		os.Rename(aside, good)
		// Leave the real file in place a while, as a patient attacker
		// would: the minion must see it, then run the other.
		time.Sleep(200 * time.Microsecond)
		if i == 0 {
			fmt.Println("ready")
		}
	}
}

const pluginTmpl = `#!/bin/sh
%s
case "$1" in
describe) echo '{"doc": "Swapped.", "methods": [{"name": "run", "doc": "Run.", "params": []}]}' ;;
call) echo '{"who": "%s"}' ;;
esac
`

// openUp makes dir and its parents up to the test's temporary root
// traversable by other users (t.TempDir makes them 0700).
func openUp(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		chmod(t, d, 0o755)
	}
}

// The attacker, another user, swaps the file a plugin symlink points to
// in a directory writable by all, in a rename loop. The minion must
// never run the attacker's file, and must say which directory it
// distrusts.
func TestPluginSwapRace(t *testing.T) {
	const calls = 200
	root := t.TempDir()
	openUp(t, root)
	shared := filepath.Join(root, "shared")
	if err := os.Mkdir(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	chmod(t, shared, 0o777)
	marker := filepath.Join(root, "evil-runs")
	writePlugin(t, shared, "good", fmt.Sprintf(pluginTmpl, "", "good"), 0o755)
	writePlugin(t, shared, "evil", fmt.Sprintf(pluginTmpl, "echo x >> "+marker, "evil"), 0o755)

	mods := filepath.Join(root, "modules.d")
	if err := os.Mkdir(mods, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(shared, "good"), filepath.Join(mods, "p")); err != nil {
		t.Fatal(err)
	}

	if os.Geteuid() == 0 {
		// The real attack: user nobody swaps the files.
		if err := os.Chown(filepath.Join(shared, "evil"), 65534, 65534); err != nil {
			t.Fatal(err)
		}
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(root, "swapper")
		copyFile(t, self, bin)
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), swapperEnv+"="+shared)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
		ready := make(chan error, 1)
		go func() {
			buf := make([]byte, 6)
			_, err := io.ReadFull(out, buf)
			ready <- err
		}()
		select {
		case err := <-ready:
			if err != nil {
				t.Fatalf("the swapper (as nobody) did not start: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the swapper (as nobody) did not start within 30s")
		}
	} else {
		// Not root: the attacker can only be this user, in a directory
		// others can write all the same.
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { swapLoop(shared, stop); close(done) }()
		t.Cleanup(func() { close(stop); <-done })
	}

	r := builtin.Registry()
	r.AddSource(&plugin.Dir{Path: mods})
	var refused, ok int
	var refusal string
	others := map[string]int{}
	for i := 0; i < calls; i++ {
		_, err := r.Call(context.Background(), "p", "run", nil, nil)
		switch {
		case err == nil:
			ok++
		case strings.Contains(err.Error(), shared):
			refused++
			refusal = err.Error()
		default:
			others[strings.ReplaceAll(err.Error(), shared, "SHARED")]++
		}
	}
	evil := 0
	if data, err := os.ReadFile(marker); err == nil {
		evil = strings.Count(string(data), "x")
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	t.Logf("%d calls: %d ran, %d refused naming %s, %d runs of the attacker's file", calls, ok, refused, shared, evil)
	for msg, n := range others {
		t.Logf("%d calls failed otherwise: %s", n, msg)
	}
	if evil != 0 {
		t.Errorf("the attacker's file ran %d times in %d calls, want 0", evil, calls)
	}
	if ok != 0 {
		t.Errorf("%d calls ran a plugin found through a directory writable by all, want 0", ok)
	}
	if refused == 0 || !strings.Contains(refusal, "writable by group or others") {
		t.Errorf("no call was refused with an error naming the directory %s as writable by others (last: %q)", shared, refusal)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// A plugin on a path only root (or the minion's user) controls keeps
// working: a symlink to a #! script in another trusted directory, and a
// plain file in modules.d.
func TestPluginTrustedPath(t *testing.T) {
	root := t.TempDir()
	openUp(t, root)
	lib := filepath.Join(root, "lib")
	mods := filepath.Join(root, "modules.d")
	for _, d := range []string{lib, mods} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writePlugin(t, lib, "impl", fmt.Sprintf(pluginTmpl, "", "impl"), 0o755)
	if err := os.Symlink(filepath.Join(lib, "impl"), filepath.Join(mods, "linked")); err != nil {
		t.Fatal(err)
	}
	// A relative symlink through a symlinked directory.
	if err := os.Symlink("lib", filepath.Join(root, "lib2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../lib2/impl", filepath.Join(mods, "rel")); err != nil {
		t.Fatal(err)
	}
	writePlugin(t, mods, "plain", fmt.Sprintf(pluginTmpl, "", "plain"), 0o755)

	r := builtin.Registry()
	r.AddSource(&plugin.Dir{Path: mods})
	for _, c := range []struct{ name, who string }{{"linked", "impl"}, {"rel", "impl"}, {"plain", "plain"}} {
		for i := 0; i < 3; i++ {
			res, err := r.Call(context.Background(), c.name, "run", nil, nil)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if got := res.(map[string]any)["who"]; got != c.who {
				t.Errorf("%s ran %v, want %s", c.name, got, c.who)
			}
		}
	}
	for _, m := range r.DescribeAll() {
		if m.Error != "" {
			t.Errorf("%s: %s", m.Name, m.Error)
		}
	}
}

// What is checked on the way to a plugin: every directory looked in
// (sticky ones only for entries of root or the minion's user), every
// symlink followed, the directory of plugins however it is reached.
func TestPluginPathChecks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Log("not root: the cases of other users' files are left out")
	}
	root := t.TempDir()
	openUp(t, root)
	lib := filepath.Join(root, "lib")
	mods := filepath.Join(root, "modules.d")
	shared := filepath.Join(root, "shared")
	sticky := filepath.Join(root, "sticky")
	for _, d := range []string{lib, mods, shared, sticky} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	chmod(t, shared, 0o777)
	chmod(t, sticky, 0o777|os.ModeSticky)
	writePlugin(t, lib, "impl", fmt.Sprintf(pluginTmpl, "", "impl"), 0o755)
	writePlugin(t, sticky, "impl", fmt.Sprintf(pluginTmpl, "", "sticky"), 0o755)
	symlink := func(target, link string) {
		t.Helper()
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	// modules.d/viashared -> shared/link -> lib/impl: the link in shared
	// could be pointed anywhere by anyone.
	symlink(filepath.Join(lib, "impl"), filepath.Join(shared, "link"))
	symlink(filepath.Join(shared, "link"), filepath.Join(mods, "viashared"))
	// A root-owned file in a sticky directory: only root may replace it.
	symlink(filepath.Join(sticky, "impl"), filepath.Join(mods, "insticky"))
	// A dangling chain of links that loops.
	symlink(filepath.Join(mods, "loop2"), filepath.Join(mods, "loop1"))
	symlink(filepath.Join(mods, "loop1"), filepath.Join(mods, "loop2"))

	r := builtin.Registry()
	r.AddSource(&plugin.Dir{Path: mods})
	if msg := refusal(t, r, "insticky"); msg != "" {
		t.Errorf("a root-owned plugin in a sticky directory: %s, want it run", msg)
	}
	if msg := refusal(t, r, "viashared"); !strings.Contains(msg, "directory "+shared+" has mode 0777, writable by group or others") {
		t.Errorf("a plugin reached through a symlink in a directory writable by all: %q, want refused naming %s", msg, shared)
	}
	if _, err := r.Lookup("loop1", "run"); err == nil {
		t.Error("a loop of symlinks was run")
	}

	if os.Geteuid() == 0 {
		// A symlink of another user's in a sticky directory: its owner
		// may point it elsewhere.
		symlink(filepath.Join(lib, "impl"), filepath.Join(sticky, "theirs"))
		if err := os.Lchown(filepath.Join(sticky, "theirs"), 65534, 65534); err != nil {
			t.Fatal(err)
		}
		symlink(filepath.Join(sticky, "theirs"), filepath.Join(mods, "theirs"))
		if msg := refusal(t, r, "theirs"); !strings.Contains(msg, "directory "+sticky+" has mode 1777") {
			t.Errorf("a symlink of nobody's in a sticky directory: %q, want refused naming %s", msg, sticky)
		}
		// A directory of another user's on the way.
		sub := filepath.Join(lib, "sub")
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		writePlugin(t, sub, "impl", fmt.Sprintf(pluginTmpl, "", "sub"), 0o755)
		if err := os.Chown(sub, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		symlink(filepath.Join(sub, "impl"), filepath.Join(mods, "insub"))
		if msg := refusal(t, r, "insub"); !strings.Contains(msg, "directory "+sub+" is owned by uid 65534") {
			t.Errorf("a plugin in a directory of nobody's: %q, want refused naming %s", msg, sub)
		}
	}

	// The directory of plugins reached through a symlink that anyone
	// could change: none of its plugins runs.
	symlink(mods, filepath.Join(shared, "mods"))
	r2 := builtin.Registry()
	r2.AddSource(&plugin.Dir{Path: filepath.Join(shared, "mods")})
	if msg := refusal(t, r2, "insticky"); !strings.Contains(msg, "directory "+shared+" has mode 0777") {
		t.Errorf("a plugin directory reached through a directory writable by all: %q, want refused naming %s", msg, shared)
	}
}

// A plugin is run from the file that was checked: its $0 is
// /proc/self/fd/3, and OVERLORD_PLUGIN says where it is in modules.d.
func TestPluginRunsFromTheCheckedFile(t *testing.T) {
	r, dir := registry(t)
	writePlugin(t, dir, "where", `#!/bin/sh
case "$1" in
describe) echo '{"doc": "Where.", "methods": [{"name": "run", "doc": "Run.", "params": []}]}' ;;
call) printf '{"zero": "%s", "path": "%s"}\n' "$0" "$OVERLORD_PLUGIN" ;;
esac
`, 0o755)
	res, err := r.Call(context.Background(), "where", "run", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := res.(map[string]any)
	if got["zero"] != "/proc/self/fd/3" || got["path"] != filepath.Join(dir, "where") {
		t.Errorf("the plugin saw $0=%v OVERLORD_PLUGIN=%v, want /proc/self/fd/3 and %s", got["zero"], got["path"], filepath.Join(dir, "where"))
	}
}

// refusal returns why the registry refuses to run plugin name's method
// run ("" if it runs it).
func refusal(t *testing.T, r *modules.Registry, name string) string {
	t.Helper()
	if _, err := r.Call(context.Background(), name, "run", nil, nil); err != nil {
		return err.Error()
	}
	return ""
}

// A plugin replaced after it described itself is not run with the old
// description: the call says so.
func TestPluginChangedSinceDescribed(t *testing.T) {
	r, dir := registry(t)
	writePlugin(t, dir, "p", fmt.Sprintf(pluginTmpl, "", "one"), 0o755)
	m, err := r.Lookup("p", "run")
	if err != nil {
		t.Fatal(err)
	}
	next := filepath.Join(dir, ".p.new")
	writePlugin(t, dir, ".p.new", fmt.Sprintf(pluginTmpl, "", "two"), 0o755)
	if err := os.Rename(next, filepath.Join(dir, "p")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Run(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "changed since it described itself") {
		t.Errorf("a call of a plugin replaced since its description: %v, want refused", err)
	}
	res, err := r.Call(context.Background(), "p", "run", nil, nil)
	if err != nil || res.(map[string]any)["who"] != "two" {
		t.Errorf("the next call: %v, %v, want the new plugin run", res, err)
	}
}
