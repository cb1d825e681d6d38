//go:build linux

package e2e

import (
	"bufio"
	"encoding/json"
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
)

// swapperEnv set to a directory makes the e2e test binary the attacker of
// TestPluginSwapRaceOnAMinion, before any test runs: it renames the file
// evil over good and back in that directory until it is killed.
const swapperEnv = "E2E_PLUGIN_SWAPPER"

func init() {
	dir := os.Getenv(swapperEnv)
	if dir == "" {
		return
	}
	good, evil, aside := filepath.Join(dir, "good"), filepath.Join(dir, "evil"), filepath.Join(dir, "aside")
	for i := 0; ; i++ {
		os.Rename(good, aside)
		os.Rename(evil, good)
		os.Rename(good, evil)
		os.Rename(aside, good)
		if i == 0 {
			fmt.Println("ready")
		}
		// The real file stays a while, as a patient attacker leaves it:
		// the minion must see it, then run the other.
		time.Sleep(200 * time.Microsecond)
	}
}

const swapPlugin = `#!/bin/sh
%s
case "$1" in
describe) echo '{"doc": "Swapped.", "methods": [{"name": "run", "doc": "Run.", "params": []}]}' ;;
call) echo '{"who": "%s"}' ;;
esac
`

// A real minion with modules.d/p a symlink to a root-owned plugin in a
// directory writable by all, while another user (nobody) renames their
// own script over it and back in a loop: no call, sync or async, runs
// their script, and every one says which directory is not trusted. A
// plugin on a trusted path (a symlink out of modules.d included) runs,
// sync and async.
func TestPluginSwapRaceOnAMinion(t *testing.T) {
	t.Parallel()
	const calls, asyncCalls = 30, 3
	f := startFleet(t, "m1")
	mods := filepath.Join(mustMinion(t, f, "m1").dir, "modules.d")
	if err := os.MkdirAll(mods, 0o700); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for d := root; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil { // nobody must get to shared
			t.Fatal(err)
		}
	}
	shared, lib := filepath.Join(root, "shared"), filepath.Join(root, "lib")
	for _, d := range []string{shared, lib} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(root, "evil-runs")
	for _, p := range []struct{ dir, name, pre, who string }{
		{shared, "good", "", "good"},
		{shared, "evil", "echo x >> " + marker, "evil"},
		{lib, "impl", "", "impl"},
	} {
		if err := os.WriteFile(filepath.Join(p.dir, p.name), []byte(fmt.Sprintf(swapPlugin, p.pre, p.who)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"p": filepath.Join(shared, "good"), "ok": filepath.Join(lib, "impl")} {
		if err := os.Symlink(target, filepath.Join(mods, link)); err != nil {
			t.Fatal(err)
		}
	}

	// The attacker's loop (this binary, see init): as user nobody when
	// the test runs as root, as the test's own user otherwise (the
	// directory is refused all the same: others can write it).
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "swapper")
	data, err := os.ReadFile(self)
	if err == nil {
		err = os.WriteFile(bin, data, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(filepath.Join(shared, "evil"), 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	var swap *exec.Cmd
	var out io.ReadCloser
	// The copy just written may be "text file busy" for a moment: a
	// process forked meanwhile by a parallel test holds its descriptor
	// until it execs.
	for try := 0; ; try++ {
		swap = exec.Command(bin)
		swap.Env = append(os.Environ(), swapperEnv+"="+shared)
		swap.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if os.Geteuid() == 0 {
			swap.SysProcAttr.Credential = &syscall.Credential{Uid: 65534, Gid: 65534}
		}
		if out, err = swap.StdoutPipe(); err != nil {
			t.Fatal(err)
		}
		err = swap.Start()
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.ETXTBSY) || try == 100 {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() {
		syscall.Kill(-swap.Process.Pid, syscall.SIGKILL)
		swap.Wait()
	})
	lines := bufio.NewScanner(out)
	if !lines.Scan() { // the first round is done; the pipe closes if it dies
		t.Fatalf("the swap loop did not run: %v", lines.Err())
	}

	refused := 0
	for i := 0; i < calls; i++ {
		cmd, stdout, stderr := overlordCmd(f, "call", "m1", "p.run")
		code := exitCode(t, cmd)
		msg := stdout.String() + stderr.String()
		if code == 0 {
			t.Errorf("call %d of p.run through a directory writable by all: exit 0\n%s", i, msg)
		}
		if strings.Contains(msg, shared) && strings.Contains(msg, "writable by group or others") {
			refused++
		}
	}
	var ids []string
	for i := 0; i < asyncCalls; i++ {
		ids = append(ids, submit(t, f, "m1", "p.run"))
	}
	for _, id := range ids {
		j := waitDone(t, f, id)
		e := j.Minions["m1"]
		switch {
		case e.OK || e.Error == nil:
			t.Errorf("async p.run %s through a directory writable by all: %+v, want refused", id, e)
		case strings.Contains(e.Error.Message, shared):
			refused++
		default:
			t.Logf("async p.run %s: %s: %s", id, e.Error.Kind, e.Error.Message)
		}
	}

	evil := 0
	if data, err := os.ReadFile(marker); err == nil {
		evil = strings.Count(string(data), "x")
	}
	t.Logf("%d sync and %d async calls on a minion: %d refused naming %s, %d runs of the attacker's file", calls, asyncCalls, refused, shared, evil)
	if evil != 0 {
		t.Errorf("the attacker's file ran %d times in %d calls, want 0", evil, calls+asyncCalls)
	}
	if refused == 0 {
		t.Errorf("no call was refused naming %s as writable by others", shared)
	}

	// A plugin on a trusted path runs, sync and async.
	cmd, stdout, stderr := overlordCmd(f, "call", "m1", "ok.run", "-o", "json")
	if code := exitCode(t, cmd); code != 0 || !strings.Contains(stdout.String(), `"impl"`) {
		t.Errorf("call m1 ok.run: exit %d\n%s%s", code, stdout, stderr)
	}
	j := waitDone(t, f, submit(t, f, "m1", "ok.run"))
	if e := j.Minions["m1"]; !e.OK || !strings.Contains(string(e.Result), `"impl"`) {
		t.Errorf("async ok.run: %+v, want it run", e)
	}
}

// submit starts an async call and returns its job ID.
func submit(t *testing.T, f *fleet, target, call string) string {
	t.Helper()
	cmd, stdout, stderr := overlordCmd(f, "call", target, call, "--async", "-o", "json")
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("call %s %s --async: exit %d\n%s%s", target, call, code, stdout, stderr)
	}
	var got struct {
		JobID string `json:"job_id"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil || got.JobID == "" {
		t.Fatalf("call --async -o json: %v\n%s", err, stdout)
	}
	return got.JobID
}

// waitDone waits (up to a minute) for job id to finish and returns it.
func waitDone(t *testing.T, f *fleet, id string) jobView {
	t.Helper()
	j, _, stderr := jobStatus(t, f, id, "--wait", "--timeout", "60s")
	if j.State == "RUNNING" || j.State == "PENDING" {
		t.Fatalf("job %s still %s after 60s\n%s", id, j.State, stderr)
	}
	return j
}
