package command_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/command"
	"github.com/overlordhq/overlord/status"
)

// run calls command.run through a registry, as the minion does.
func run(t *testing.T, ctx context.Context, named map[string]any, positional ...any) (command.Result, *status.Error) {
	t.Helper()
	r := modules.NewRegistry()
	if err := r.Add(command.Module{}); err != nil {
		t.Fatal(err)
	}
	got, err := r.Call(ctx, "command", "run", named, positional)
	var se *status.Error
	if err != nil && !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a *status.Error", err, err)
	}
	res, ok := got.(command.Result)
	if got != nil && !ok {
		t.Fatalf("result is %T, want command.Result", got)
	}
	return res, se
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		named      map[string]any
		positional []any
		stdout     string
		stderr     string
		exit       int
	}{
		{name: "shell string", positional: []any{"echo hello; echo oops >&2"}, stdout: "hello\n", stderr: "oops\n"},
		{name: "shell features", positional: []any{"for i in 1 2; do printf $i; done | tr 12 ab"}, stdout: "ab"},
		{name: "argv list is not a shell", positional: []any{[]any{"printf", "%s|", "a b", "$HOME", ";", "*"}},
			stdout: "a b|$HOME|;|*|"},
		{name: "argv from PATH", positional: []any{[]any{"echo", "x"}}, stdout: "x\n"},
		{name: "stdin", named: map[string]any{"stdin": "line 1\nline 2\n"}, positional: []any{"cat"}, stdout: "line 1\nline 2\n"},
		{name: "empty stdin", named: map[string]any{"stdin": ""}, positional: []any{"cat"}},
		{name: "no stdin does not hang", positional: []any{"cat"}},
		{name: "env", named: map[string]any{"env": map[string]any{"FOO": "1", "BAR": "two words"}},
			positional: []any{`echo "$FOO:$BAR"`}, stdout: "1:two words\n"},
		{name: "env keeps the environment", named: map[string]any{"env": map[string]any{"FOO": "1"}},
			positional: []any{`test -n "$PATH" && echo ok`}, stdout: "ok\n"},
		{name: "env overrides", named: map[string]any{"env": map[string]any{"HOME": "/nowhere"}},
			positional: []any{`echo "$HOME"`}, stdout: "/nowhere\n"},
		{name: "env number", named: map[string]any{"env": map[string]any{"PORT": 8080.0}},
			positional: []any{`echo "$PORT"`}, stdout: "8080\n"},
		{name: "cwd", named: map[string]any{"cwd": dir}, positional: []any{"pwd -P"}, stdout: realDir + "\n"},
		{name: "cwd positional", positional: []any{[]any{"pwd", "-P"}, dir}, stdout: realDir + "\n"},
		{name: "exactly at the output cap", named: map[string]any{"max_output": 5.0}, positional: []any{"printf hello"}, stdout: "hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := run(t, context.Background(), tt.named, tt.positional...)
			if err != nil {
				t.Fatalf("run: %v (stderr %q)", err, res.Stderr)
			}
			if res.Stdout != tt.stdout || res.Stderr != tt.stderr || res.ExitCode != tt.exit {
				t.Errorf("got stdout %q stderr %q exit %d; want %q %q %d", res.Stdout, res.Stderr, res.ExitCode, tt.stdout, tt.stderr, tt.exit)
			}
			if res.Truncated {
				t.Error("truncated")
			}
		})
	}
}

func TestRunFailures(t *testing.T) {
	tests := []struct {
		name       string
		named      map[string]any
		positional []any
		kind       status.Kind
		msg        string
		exit       int
		stdout     string
		stderr     string
	}{
		{name: "non-zero exit carries output", positional: []any{"echo out; echo err >&2; exit 3"},
			kind: status.KindModuleError, msg: "exit status 3", exit: 3, stdout: "out\n", stderr: "err\n"},
		{name: "false", positional: []any{[]any{"false"}}, kind: status.KindModuleError, msg: "exit status 1", exit: 1},
		{name: "killed by a signal", positional: []any{"echo before; kill -9 $$"},
			kind: status.KindModuleError, msg: "killed", exit: -1, stdout: "before\n"},
		{name: "no such program", positional: []any{[]any{"/nonexistent/program"}},
			kind: status.KindModuleError, msg: "/nonexistent/program", exit: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := run(t, context.Background(), tt.named, tt.positional...)
			if err == nil {
				t.Fatalf("no error; result %+v", res)
			}
			if err.Kind != tt.kind || !strings.Contains(err.Message, tt.msg) {
				t.Errorf("error %v, want %s saying %q", err, tt.kind, tt.msg)
			}
			if res.ExitCode != tt.exit || res.Stdout != tt.stdout || res.Stderr != tt.stderr {
				t.Errorf("result exit %d stdout %q stderr %q; want %d %q %q", res.ExitCode, res.Stdout, res.Stderr, tt.exit, tt.stdout, tt.stderr)
			}
		})
	}
}

// A cwd that does not exist fails the call; the message should name the
// directory, not blame the shell.
func TestRunMissingCwd(t *testing.T) {
	res, err := run(t, context.Background(), map[string]any{"cwd": "/nonexistent/dir"}, "true")
	if err == nil || err.Kind != status.KindModuleError {
		t.Fatalf("error %v, want module_error", err)
	}
	if res.ExitCode != -1 {
		t.Errorf("exit code %d, want -1 (never ran)", res.ExitCode)
	}
	if !strings.Contains(err.Message, "/nonexistent/dir") {
		t.Errorf("command.run cwd=/nonexistent/dir fails with %q, which does not name the directory", err.Message)
	}
}

func TestRunBadArgs(t *testing.T) {
	tests := []struct {
		name       string
		named      map[string]any
		positional []any
		msg        string
	}{
		{name: "no cmd", msg: "missing required parameter cmd"},
		{name: "blank command line", positional: []any{"  \t"}, msg: "empty command line"},
		{name: "empty argv", positional: []any{[]any{}}, msg: "empty argv list"},
		{name: "argv with a number", positional: []any{[]any{"echo", 1.0}}, msg: "element 1 is not a string"},
		{name: "cmd of a wrong type", positional: []any{42.0}, msg: "parameter cmd: want string|list"},
		{name: "env name with =", named: map[string]any{"env": map[string]any{"A=B": "1"}}, positional: []any{"true"}, msg: `bad variable name "A=B"`},
		{name: "empty env name", named: map[string]any{"env": map[string]any{"": "1"}}, positional: []any{"true"}, msg: `bad variable name ""`},
		{name: "env not an object", named: map[string]any{"env": "A=1"}, positional: []any{"true"}, msg: "parameter env: want object"},
		{name: "zero max_output", named: map[string]any{"max_output": 0.0}, positional: []any{"true"}, msg: "max_output: must be positive"},
		{name: "negative max_output", named: map[string]any{"max_output": -1.0}, positional: []any{"true"}, msg: "max_output: must be positive"},
		{name: "fractional max_output", named: map[string]any{"max_output": 1.5}, positional: []any{"true"}, msg: "parameter max_output: want int"},
		{name: "negative timeout", named: map[string]any{"timeout": "-1s"}, positional: []any{"true"}, msg: "parameter timeout: want duration"},
		{name: "timeout without unit", named: map[string]any{"timeout": "10"}, positional: []any{"true"}, msg: "parameter timeout: want duration"},
		{name: "unknown parameter", named: map[string]any{"shell": "bash"}, positional: []any{"true"}, msg: `unknown parameter "shell"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := run(t, context.Background(), tt.named, tt.positional...)
			if err == nil || err.Kind != status.KindBadArgs || !strings.Contains(err.Message, tt.msg) {
				t.Errorf("error %v, want bad_args saying %q", err, tt.msg)
			}
		})
	}
}

func TestRunOutputCap(t *testing.T) {
	tests := []struct {
		name              string
		cmd               string
		max               float64
		stdoutLen, errLen int
		truncated         bool
	}{
		{"stdout over", "printf '%0100d' 0", 10, 10, 0, true},
		{"stderr over", "printf '%0100d' 0 >&2", 10, 0, 10, true},
		{"both under", "printf abc; printf de >&2", 10, 3, 2, false},
		{"many small writes", "for i in $(seq 1 50); do echo $i; done", 20, 20, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := run(t, context.Background(), map[string]any{"max_output": tt.max}, tt.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Stdout) != tt.stdoutLen || len(res.Stderr) != tt.errLen || res.Truncated != tt.truncated {
				t.Errorf("stdout %d bytes, stderr %d bytes, truncated %v; want %d, %d, %v",
					len(res.Stdout), len(res.Stderr), res.Truncated, tt.stdoutLen, tt.errLen, tt.truncated)
			}
		})
	}
	t.Run("default cap", func(t *testing.T) {
		res, err := run(t, context.Background(), nil, "head -c 1100000 /dev/zero")
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Stdout) != command.DefaultMaxOutput || !res.Truncated {
			t.Errorf("stdout %d bytes, truncated %v; want %d, true", len(res.Stdout), res.Truncated, command.DefaultMaxOutput)
		}
	})
}

// TestRunTimeoutKillsProcessGroup starts a background child that would
// outlive its shell, and checks that the timeout ends the call promptly and
// kills the child too.
func TestRunTimeoutKillsProcessGroup(t *testing.T) {
	tests := []struct {
		name    string
		timeout any
	}{
		// Long enough for the shell to have started its child and
		// printed its pid on a loaded machine (at 500 ms, under make
		// test, it sometimes had not).
		{"duration string", "2s"},
		{"seconds", 2.0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Kind timeout: the timeout, not the command's own end,
			// ended the call.
			res, err := run(t, context.Background(), map[string]any{"timeout": tt.timeout}, "sleep 30 & echo $!; sleep 30")
			if err == nil || err.Kind != status.KindTimeout {
				t.Fatalf("error %v, want kind timeout", err)
			}
			pid, perr := strconv.Atoi(strings.TrimSpace(res.Stdout))
			if perr != nil {
				t.Fatalf("stdout %q is not the child's pid", res.Stdout)
			}
			waitGone(t, pid)
		})
	}
}

func TestRunCancelKillsProcessGroup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	res, err := run(t, ctx, nil, "sleep 30 & echo $!; sleep 30")
	if err == nil || err.Kind != status.KindCancelled {
		t.Fatalf("error %v, want kind cancelled", err)
	}
	pid, perr := strconv.Atoi(strings.TrimSpace(res.Stdout))
	if perr != nil {
		t.Fatalf("stdout %q is not the child's pid", res.Stdout)
	}
	waitGone(t, pid)
}

// A caller's deadline shorter than the timeout parameter wins.
func TestRunCallerDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := run(t, ctx, map[string]any{"timeout": "1m"}, "sleep 30")
	if err == nil || err.Kind != status.KindTimeout {
		t.Errorf("error %v, want kind timeout", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %s", took)
	}
}

func TestRunDuration(t *testing.T) {
	res, err := run(t, context.Background(), nil, "sleep 0.2")
	if err != nil {
		t.Fatal(err)
	}
	if res.DurationMS < 200 || res.DurationMS > 10000 {
		t.Errorf("duration_ms %d for sleep 0.2", res.DurationMS)
	}
}

// Environment values that are not strings reach the command as JSON would
// write them: a number as its digits.
func TestRunEnvLargeNumber(t *testing.T) {
	res, err := run(t, context.Background(), map[string]any{"env": map[string]any{"N": 1000000.0, "OK": true}}, `echo "$N $OK"`)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(res.Stdout); got != "1000000 true" {
		t.Errorf(`command.run env {"N": 1000000, "OK": true} printed %q, want "1000000 true"`, got)
	}
}

// waitGone waits until pid has exited (gone or a zombie waiting for its
// reaper).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if err != nil {
			t.Skipf("cannot read /proc: %v", err)
		}
		// pid (comm) state ...
		if i := strings.LastIndexByte(string(data), ')'); i > 0 && len(data) > i+2 {
			if st := data[i+2]; st == 'Z' || st == 'X' {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("child process %d still runs after the call ended: %s", pid, data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCapped(t *testing.T) {
	c := &command.Capped{Max: 5}
	for _, s := range []string{"ab", "cd", "efg", "h"} {
		n, err := c.Write([]byte(s))
		if n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v; want %d, nil", s, n, err, len(s))
		}
	}
	if c.String() != "abcde" || !c.Truncated() {
		t.Errorf("kept %q, truncated %v; want abcde, true", c.String(), c.Truncated())
	}
	c = &command.Capped{Max: 3}
	c.Write([]byte("abc"))
	if c.Truncated() {
		t.Error("truncated at exactly Max bytes")
	}
}
