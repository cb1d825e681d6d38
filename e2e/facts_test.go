//go:build linux

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// moduleNames returns the modules 'overlord modules NAME -o json' lists
// for one minion, built-in modules and plugins alike.
func moduleNames(t *testing.T, f *fleet, name string) map[string]bool {
	t.Helper()
	out, err := f.overlord("modules", name, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]struct {
		OK      bool `json:"ok"`
		Modules []struct {
			Name   string `json:"name"`
			Plugin bool   `json:"plugin"`
		} `json:"modules"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || !got[name].OK {
		t.Fatalf("modules %s -o json: %v\n%s", name, err, out)
	}
	names := map[string]bool{}
	for _, m := range got[name].Modules {
		names[m.Name] = !m.Plugin
	}
	return names
}

// whereCall runs 'overlord call --where W... TARGET test.ping -o json' and
// returns its exit status and the minions it called.
func whereCall(t *testing.T, f *fleet, target string, where ...string) (int, []string) {
	t.Helper()
	args := []string{"call"}
	for _, w := range where {
		args = append(args, "--where", w)
	}
	cmd, stdout, stderr := overlordCmd(f, append(args, target, "test.ping", "-o", "json")...)
	code := exitCode(t, cmd)
	if code == 3 {
		if !strings.Contains(stderr.String(), "matched no minion") {
			t.Errorf("call --where %v: exit 3, stderr %q", where, stderr)
		}
		return code, nil
	}
	var j jobView
	if err := json.Unmarshal(stdout.Bytes(), &j); err != nil {
		t.Fatalf("call --where %v: exit %d, %v\n%s%s", where, code, err, stdout, stderr)
	}
	return code, j.names()
}

// TestWhereFacts: 'overlord minion facts' caches every minion's facts,
// and 'call --where' narrows a target by them: this machine's os matches
// every minion (they all run here), another os none (exit 3).
func TestWhereFacts(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2")
	if builtin, ok := moduleNames(t, f, "web1")["facts"]; !ok || !builtin {
		t.Skip("no built-in facts module in this tree ('overlord modules web1' does not list it): 'minion facts' and 'call --where' cannot be tested with real facts")
	}
	out, err := f.overlord("minion", "facts", "*", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var j struct {
		Minions map[string]struct {
			OK     bool           `json:"ok"`
			Result map[string]any `json:"result"`
		} `json:"minions"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("minion facts -o json: %v\n%s", err, out)
	}
	osName, _ := j.Minions["web1"].Result["os"].(string)
	if !j.Minions["web1"].OK || !j.Minions["web2"].OK || osName == "" {
		t.Fatalf("minion facts: want both ok with an os fact:\n%s", out)
	}
	// This machine's os, as a distribution (os-release ID) or a kernel.
	mine := map[string]bool{runtime.GOOS: true}
	if data, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "ID="); ok {
				mine[strings.Trim(v, `"`)] = true
			}
		}
	}
	if !mine[strings.ToLower(osName)] {
		t.Errorf("fact os = %q, want this machine's (one of %v)", osName, mine)
	}

	if code, called := whereCall(t, f, "*", "os="+osName); code != 0 || strings.Join(called, " ") != "web1 web2" {
		t.Errorf("call --where os=%s '*': exit %d, called %v; want 0, web1 web2", osName, code, called)
	}
	if code, called := whereCall(t, f, "*", "os=nosuchos"); code != 3 {
		t.Errorf("call --where os=nosuchos '*': exit %d, called %v; want 3", code, called)
	}
}

// TestWherePluginFacts: 'call --where' with facts from a facts.all of a
// plugin, while the tree has no built-in facts module: any facts.all
// result refreshes the overlord's cache, and the operators select by
// it.
func TestWherePluginFacts(t *testing.T) {
	t.Parallel()
	names := []string{"web1", "web2", "web3"}
	// One minion tells whether the tree has a built-in facts module; the
	// others start only when the test goes on.
	f := startFleet(t, names[0])
	if builtin := moduleNames(t, f, "web1")["facts"]; builtin {
		t.Skip("the built-in facts module shadows a plugin named facts; TestWhereFacts covers --where")
	}
	for _, n := range names[1:] {
		m, err := f.add(n)
		if err == nil {
			err = f.start(m)
		}
		if err == nil {
			err = f.ready(m)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// Each minion's facts.all says where it runs from: web2 is "debian"
	// with 16 GB, the others "alpine" with 2 GB.
	plugin := `#!/bin/sh
case "$1" in
describe) echo '{"doc": "Facts for the test.", "methods": [{"name": "all", "params": []}]}' ;;
call)
  case "$PWD" in
  */web2) echo '{"os": "debian", "memory_bytes": 16e9, "role": "db-main"}' ;;
  *) echo '{"os": "alpine", "memory_bytes": 2e9, "role": "web-front"}' ;;
  esac ;;
esac
`
	for _, n := range names {
		dir := filepath.Join(mustMinion(t, f, n).dir, "modules.d")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "facts"), []byte(plugin), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// No facts cached yet: nothing matches.
	if code, _ := whereCall(t, f, "*", "os=debian"); code != 3 {
		t.Errorf("call --where os=debian before any facts: exit %d, want 3", code)
	}
	out, err := f.overlord("minion", "facts", "*", "-o", "json")
	var j jobView
	if err == nil {
		err = json.Unmarshal([]byte(out), &j)
	}
	if err != nil || j.Summary != (summaryView{Total: 3, OK: 3}) {
		t.Fatalf("minion facts '*' -o json: %v\n%s", err, out)
	}
	for _, tt := range []struct {
		target string
		where  []string
		code   int
		want   string
	}{
		{"*", []string{"os=debian"}, 0, "web2"},
		{"*", []string{"os!=debian"}, 0, "web1 web3"},
		{"*", []string{"memory_bytes>=8e9"}, 0, "web2"},
		{"*", []string{"memory_bytes<8e9", "os=alpine"}, 0, "web1 web3"},
		{"*", []string{"role~^web-"}, 0, "web1 web3"},
		{"web[12]", []string{"os=alpine"}, 0, "web1"},
		{"*", []string{"os=debian", "memory_bytes<8e9"}, 3, ""},
		{"*", []string{"os=nosuchos"}, 3, ""},
		{"*", []string{"nosuchfact=1"}, 3, ""},
	} {
		code, called := whereCall(t, f, tt.target, tt.where...)
		if code != tt.code || strings.Join(called, " ") != tt.want {
			t.Errorf("call --where %v %q: exit %d, called %v; want %d, [%s]", tt.where, tt.target, code, called, tt.code, tt.want)
		}
	}
}
