package plugin_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/builtin"
	"github.com/overlordhq/overlord/modules/plugin"
	"github.com/overlordhq/overlord/status"
)

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// pluginError returns why the registry refuses plugin name ("" if it
// does not).
func pluginError(t *testing.T, r *modules.Registry, name string) string {
	t.Helper()
	_, err := r.Lookup(name, "greet")
	if err == nil {
		return ""
	}
	if status.KindOf(err) != status.KindModuleError {
		t.Fatalf("%s: %v, want a broken plugin (module_error)", name, err)
	}
	return err.Error()
}

func TestPluginTrust(t *testing.T) {
	r, dir := registry(t)
	other := t.TempDir()
	target := filepath.Join(other, "hello-impl")
	writePlugin(t, other, "hello-impl", hello, 0o755)
	if err := os.Symlink(target, filepath.Join(dir, "linked")); err != nil {
		t.Fatal(err)
	}
	if msg := pluginError(t, r, "linked"); msg != "" {
		t.Errorf("a symlink to a 0755 plugin: %s, want it run", msg)
	}

	writePlugin(t, dir, "groupw", hello, 0o755)
	chmod(t, filepath.Join(dir, "groupw"), 0o775)
	if msg := pluginError(t, r, "groupw"); !strings.Contains(msg, "writable by group or others") {
		t.Errorf("a group-writable plugin: %q, want refused", msg)
	}
	chmod(t, target, 0o757)
	if msg := pluginError(t, r, "linked"); !strings.Contains(msg, "writable by group or others") {
		t.Errorf("a symlink to a world-writable plugin: %q, want refused", msg)
	}
	chmod(t, target, 0o755)

	if os.Geteuid() == 0 {
		writePlugin(t, dir, "foreign", hello, 0o755)
		if err := os.Chown(filepath.Join(dir, "foreign"), 12345, 12345); err != nil {
			t.Fatal(err)
		}
		if msg := pluginError(t, r, "foreign"); !strings.Contains(msg, "owned by uid 12345") {
			t.Errorf("a plugin of another user: %q, want refused", msg)
		}
		// The minion's own user may own its plugins.
		uid := 12345
		r2 := builtin.Registry()
		r2.AddSource(&plugin.Dir{Path: dir, UID: &uid})
		if msg := pluginError(t, r2, "foreign"); msg != "" {
			t.Errorf("a plugin of the minion's user: %s, want it run", msg)
		}
	}

	// A directory others can write: none of its plugins runs.
	chmod(t, dir, 0o777)
	for _, name := range []string{"linked", "groupw"} {
		if msg := pluginError(t, r, name); !strings.Contains(msg, "directory") || !strings.Contains(msg, "writable by group or others") {
			t.Errorf("%s in a world-writable directory: %q, want refused", name, msg)
		}
	}
	chmod(t, dir, 0o755)
	if msg := pluginError(t, r, "linked"); msg != "" {
		t.Errorf("after the directory was fixed: %s", msg)
	}
}

// countingSource is a modules.Source that counts its listings.
type countingSource struct {
	mu    sync.Mutex
	lists int
}

func (c *countingSource) Modules() []modules.Module {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lists++
	return nil
}

// A built-in module is looked up without consulting the plugins, and a
// plugin is looked up without describing the others.
func TestPluginLookupsTouchOnlyWhatTheyNeed(t *testing.T) {
	r, dir := registry(t)
	src := &countingSource{}
	r.AddSource(src)
	marker := filepath.Join(t.TempDir(), "described")
	writePlugin(t, dir, "hello", hello, 0o755)
	writePlugin(t, dir, "other", "#!/bin/sh\ntouch "+marker+"\necho '{}'\n", 0o755)
	if _, err := r.Call(context.Background(), "test", "ping", nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Lookup("hello", "greet"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("looking up one plugin described another")
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.lists != 0 {
		t.Errorf("the sources were listed %d times for a built-in and a plugin found in an earlier source", src.lists)
	}
}

// A slow plugin describing itself does not hold up lookups of others.
func TestSlowDescribeDoesNotBlockOthers(t *testing.T) {
	r, dir := registry(t)
	writePlugin(t, dir, "hello", hello, 0o755)
	if _, err := r.Lookup("hello", "greet"); err != nil { // cached
		t.Fatal(err)
	}
	// slow says it started, then waits for the gate file before it
	// describes itself (or is killed after plugin.DescribeTimeout).
	gates := t.TempDir()
	started, gate := filepath.Join(gates, "started"), filepath.Join(gates, "gate")
	writePlugin(t, dir, "slow", "#!/bin/sh\ntouch '"+started+"'\nwhile [ ! -e '"+gate+"' ]; do sleep 0.01; done\necho '{}'\n", 0o755)
	done := make(chan struct{})
	go func() {
		r.DescribeAll() // describes slow
		close(done)
	}()
	defer func() {
		if err := os.WriteFile(gate, nil, 0o600); err != nil {
			t.Error(err)
		}
		<-done
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(started); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow plugin did not start describing itself within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	looked := make(chan error, 1)
	go func() {
		_, err := r.Lookup("hello", "greet")
		looked <- err
	}()
	// slow cannot finish before the gate opens, except by being killed
	// after DescribeTimeout: a lookup that ends after done waited for it.
	select {
	case err := <-looked:
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
			t.Errorf("a lookup of a cached plugin ended only after another plugin's description (killed after %s)", plugin.DescribeTimeout)
		default:
		}
	case <-done:
		t.Errorf("a lookup of a cached plugin waited for another plugin's description (killed after %s)", plugin.DescribeTimeout)
	}
}
