//go:build linux

package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// A command whose output would set the operator's terminal title and
// clear the screen if printed as it is.
const (
	escCmd  = `printf '\033]0;pwned\007\033[2J\n'`
	escOut  = "\x1b]0;pwned\x07\x1b[2J\n"
	escText = "^[]0;pwned^G^[[2J"
)

// noTerminalControls fails if out holds ESC or BEL.
func noTerminalControls(t *testing.T, what string, out []byte) {
	t.Helper()
	if i := bytes.IndexAny(out, "\x1b\x07"); i >= 0 {
		t.Errorf("%s writes byte %#x to the terminal:\n%q", what, out[i], out)
	}
}

// resultOf returns minion's command.run result in a job printed with
// -o json.
func resultOf(t *testing.T, doc []byte, minion string) map[string]any {
	t.Helper()
	var job struct {
		Minions map[string]struct {
			Result map[string]any `json:"result"`
		} `json:"minions"`
	}
	if err := json.Unmarshal(doc, &job); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	res := job.Minions[minion].Result
	if res == nil {
		t.Fatalf("no result for %s in\n%s", minion, doc)
	}
	return res
}

// TestEscapesCall: the real binaries, a real minion. call's text output
// shows the escape sequences as ^[ and ^G; -o json has them exactly;
// --raw prints them as they are. Output that is not UTF-8 comes with its
// exact bytes in stdout_base64.
func TestEscapesCall(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "m1")

	cmd, stdout, stderr := overlordCmd(f, "call", "m1", "command.run", escCmd)
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("call: exit %d\n%s", code, stderr)
	}
	noTerminalControls(t, "call", stdout.Bytes())
	if !bytes.Contains(stdout.Bytes(), []byte("\n"+escText+"\n")) {
		t.Errorf("call does not show the output as %s:\n%s", escText, stdout)
	}

	cmd, stdout, stderr = overlordCmd(f, "call", "m1", "command.run", escCmd, "-o", "json")
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("call -o json: exit %d\n%s", code, stderr)
	}
	if got := resultOf(t, stdout.Bytes(), "m1")["stdout"]; got != escOut {
		t.Errorf("call -o json: stdout %q, want %q", got, escOut)
	}

	cmd, stdout, stderr = overlordCmd(f, "call", "m1", "command.run", escCmd, "--raw")
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("call --raw: exit %d\n%s", code, stderr)
	}
	if !bytes.Contains(stdout.Bytes(), []byte("\n"+escOut)) {
		t.Errorf("call --raw does not print the bytes as they are:\n%q", stdout)
	}

	cmd, stdout, stderr = overlordCmd(f, "call", "m1", "command.run", `printf '\377\376'`, "-o", "json")
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("call -o json: exit %d\n%s", code, stderr)
	}
	res := resultOf(t, stdout.Bytes(), "m1")
	b64, _ := res["stdout_base64"].(string)
	exact, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || string(exact) != "\xff\xfe" {
		t.Errorf("invalid UTF-8 output: stdout_base64 %q decodes to %q (%v), want \\xff\\xfe; result %v", b64, exact, err, res)
	}
	if _, ok := res["stdout"].(string); !ok {
		t.Errorf("stdout missing beside stdout_base64: %v", res)
	}
}

// lineWatcher collects a process's output and says when a string has
// shown up in it.
type lineWatcher struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	seen chan struct{}
	want []byte
	once sync.Once
	done chan struct{}
}

func watch(r io.Reader, want string) *lineWatcher {
	w := &lineWatcher{seen: make(chan struct{}), want: []byte(want), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		p := make([]byte, 4096)
		for {
			n, err := r.Read(p)
			w.mu.Lock()
			w.buf.Write(p[:n])
			if bytes.Contains(w.buf.Bytes(), w.want) {
				w.once.Do(func() { close(w.seen) })
			}
			w.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return w
}

func (w *lineWatcher) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}

// TestEscapesJobStatusFollow: job status and its --follow lines show the
// escape sequences as ^[ and ^G, and print them as they are with --raw.
// Two followers watch the same async job; the command waits on a gate
// until both have printed its first line.
func TestEscapesJobStatusFollow(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "m1")
	g := newGate(t, "go")
	// Not callAsync: how fast the submit returns is not what this tests.
	cmd, stdout, stderr := overlordCmd(f, "call", "m1", "command.run", escCmd+"; "+g.wait()+"; printf 'end\\033[0m\\n'", "--async")
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("call --async: exit %d\n%s", code, stderr)
	}
	id := strings.TrimSpace(stdout.String())
	if !jobIDPattern.MatchString(id) {
		t.Fatalf("call --async printed %q, want a job ID", stdout)
	}

	type follower struct {
		name   string
		w      *lineWatcher
		wait   func() error
		stderr *bytes.Buffer
	}
	start := func(name, want string, flags ...string) follower {
		cmd, _, stderr := overlordCmd(f, append([]string{"job", "status", id, "--follow"}, flags...)...)
		cmd.Stdout = nil
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		w := watch(out, want)
		return follower{name, w, func() error { <-w.done; return cmd.Wait() }, stderr}
	}
	text := start("--follow", "m1| "+escText+"\n")
	raw := start("--follow --raw", "m1| "+escOut, "--raw")
	for _, fl := range []follower{text, raw} {
		select {
		case <-fl.w.seen:
		case <-time.After(30 * time.Second):
			t.Fatalf("job status %s: the first line did not show in 30s; printed:\n%q\n%s", fl.name, fl.w.bytes(), fl.stderr)
		}
	}
	g.open(t)
	for _, fl := range []follower{text, raw} {
		if err := fl.wait(); err != nil {
			t.Fatalf("job status %s: %v\n%s", fl.name, err, fl.stderr)
		}
	}

	got := text.w.bytes()
	noTerminalControls(t, "job status --follow", got)
	for _, want := range []string{"m1| end^[[0m\n", "\n" + escText + "\n", "\nend^[[0m\n"} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("job status --follow lacks %q:\n%s", want, got)
		}
	}
	got = raw.w.bytes()
	for _, want := range []string{"m1| end\x1b[0m\n", "\n" + escOut, "\nend\x1b[0m\n"} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("job status --follow --raw lacks %q:\n%q", want, got)
		}
	}

	cmd, stdout, stderr = overlordCmd(f, "job", "status", id)
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("job status: exit %d\n%s", code, stderr)
	}
	noTerminalControls(t, "job status", stdout.Bytes())
	if !strings.Contains(stdout.String(), "\n"+escText+"\n") {
		t.Errorf("job status does not show the output as %s:\n%s", escText, stdout)
	}
	cmd, stdout, stderr = overlordCmd(f, "job", "status", id, "--raw")
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("job status --raw: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout.String(), "\n"+escOut) {
		t.Errorf("job status --raw does not print the bytes as they are:\n%q", stdout)
	}
	if got := waitFinished(t, f, id, 0).Minions["m1"].stdout(); got != escOut+"end\x1b[0m\n" {
		t.Errorf("job status -o json: stdout %q, want the exact bytes", got)
	}
}
