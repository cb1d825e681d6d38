// Package command is the command module: run a command line through
// /bin/sh -c, or an argv list without a shell, in its own process group.
package command

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// DefaultMaxOutput is the default cap on each of stdout and stderr.
const DefaultMaxOutput = 1 << 20

// Module is the command module.
type Module struct{}

var _ modules.Module = Module{}

// Name implements modules.Module.
func (Module) Name() string { return "command" }

// Doc implements modules.Module.
func (Module) Doc() string { return "Run commands." }

// Methods implements modules.Module.
func (Module) Methods() []*modules.Method {
	return []*modules.Method{{
		Name: "run",
		Doc: "Run a command line through /bin/sh -c, or an argv list without a shell. " +
			"A non-zero exit is a module_error that still carries the output. " +
			"Where stdout or stderr is not valid UTF-8, stdout_base64 or stderr_base64 carries its exact bytes.",
		Returns: "{stdout, stderr, exit_code, duration_ms, truncated, stdout_base64, stderr_base64}",
		Params: append([]modules.Param{
			{Name: "cmd", Type: "string|list", Required: true, Doc: `a shell command line, or an argv list such as ["ls", "-l"]`},
		}, processParams()...),
		Positional: 1,
		Run:        run,
	}, scriptMethod()}
}

// processParams are the parameters of how a process runs, shared by run
// and script.
func processParams() []modules.Param {
	return []modules.Param{
		{Name: "cwd", Type: modules.String, Doc: "working directory"},
		{Name: "env", Type: modules.Object, Doc: "extra environment variables, {NAME: value}"},
		{Name: "stdin", Type: modules.String, Doc: "text written to the command's standard input"},
		{Name: "timeout", Type: modules.Duration, Doc: "kill the command's process group after this long"},
		{Name: "max_output", Type: modules.Int, Default: DefaultMaxOutput, Max: rpc.MaxOutput,
			Doc: "cap in bytes on each of stdout and stderr; at most 4194304 (4 MiB, what a reply carries): more is bad_args. " +
				"In an async job the spool keeps up to 64 MiB of the output as streamed"},
	}
}

// Result is what command.run returns.
//
// Stdout and Stderr hold the bytes as the command wrote them. JSON can
// only carry text: where one of them is not valid UTF-8, JSON shows each
// bad byte as U+FFFD, and StdoutBase64 or StderrBase64 carries the exact
// bytes, base64-encoded (absent when the text is valid UTF-8).
type Result struct {
	Stdout       string `json:"stdout"`
	Stderr       string `json:"stderr"`
	ExitCode     int    `json:"exit_code"`
	DurationMS   int64  `json:"duration_ms"`
	Truncated    bool   `json:"truncated,omitempty"`
	StdoutBase64 string `json:"stdout_base64,omitempty"`
	StderrBase64 string `json:"stderr_base64,omitempty"`
}

// exactBytes returns s base64-encoded if it is not valid UTF-8 (JSON
// would lose its bad bytes), else "".
func exactBytes(s string) string {
	if utf8.ValidString(s) {
		return ""
	}
	return base64.StdEncoding.EncodeToString([]byte(s))
}

func run(ctx context.Context, a modules.Args) (any, error) {
	argv, err := argv(a.Value("cmd"))
	if err != nil {
		return nil, err
	}
	return execArgs(ctx, "run", argv, a)
}

// execArgs runs argv as the arguments of how a process runs say (cwd,
// env, stdin, timeout, max_output), for the method named method.
func execArgs(ctx context.Context, method string, argv []string, a modules.Args) (any, error) {
	if d := a.Duration("timeout"); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	limit := a.Int("max_output")
	if limit <= 0 {
		return nil, status.Errorf(status.KindBadArgs, "%s: parameter max_output: must be positive, got %d", method, limit)
	}
	if limit > rpc.MaxOutput {
		// Bind has refused it already; this keeps Run safe on its own.
		return nil, status.Errorf(status.KindBadArgs, "%s: parameter max_output: at most %d, got %d", method, rpc.MaxOutput, limit)
	}

	spec := Spec{Argv: argv, Dir: a.String("cwd"), MaxOutput: int(limit)}
	if env := a.Object("env"); len(env) > 0 {
		keys := make([]string, 0, len(env))
		for k := range env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				return nil, status.Errorf(status.KindBadArgs, "%s: parameter env: bad variable name %q", method, k)
			}
			spec.Env = append(spec.Env, k+"="+envValue(env[k]))
		}
	}
	if a.Has("stdin") {
		spec.Stdin = strings.NewReader(a.String("stdin"))
	}
	return Exec(ctx, spec)
}

// Spec is a process for Exec to run.
type Spec struct {
	Argv      []string
	Dir       string    // working directory; "" for the minion's
	Env       []string  // NAME=value added to the minion's environment
	Stdin     io.Reader // nil for none
	MaxOutput int       // cap on each of stdout and stderr; 0 for DefaultMaxOutput
	// File, if set, is the program run instead of the file Argv[0]
	// names: an open file (O_PATH is enough) that the process gets as
	// its fd 3 and is executed from as /proc/self/fd/3, so what runs is
	// the very file that was opened, whatever its path names by then.
	// Argv[0] is still the name the process is given; the interpreter of
	// a #! script is given /proc/self/fd/3 as the script's path, which
	// is why fd 3 stays open in the process. Exec does not close File.
	File *os.File
}

// fileExec executes Spec.File in the process, where ExtraFiles makes it
// fd 3.
const fileExec = "/proc/self/fd/3"

// Exec runs a process as command.run does: in a process group of its own
// (or in an async job's runner's group), killed with everything it
// started when ctx ends, stdout and stderr capped, and in an async job
// streamed to the job's output as produced. A non-zero exit is kind
// module_error, ctx's deadline kind timeout, its cancellation kind
// cancelled; the Result comes back in every case.
func Exec(ctx context.Context, spec Spec) (Result, error) {
	if spec.MaxOutput <= 0 {
		spec.MaxOutput = DefaultMaxOutput
	}
	if len(spec.Argv) == 0 {
		return Result{ExitCode: -1}, status.Errorf(status.KindBadArgs, "empty argv")
	}
	name := spec.Argv[0]
	if spec.File != nil {
		name = fileExec
	}
	c := exec.CommandContext(ctx, name, spec.Argv[1:]...)
	if spec.File != nil {
		c.Args[0] = spec.Argv[0]
		c.ExtraFiles = []*os.File{spec.File} // fd 3
	}
	if c.Dir = spec.Dir; c.Dir != "" {
		if fi, err := os.Stat(c.Dir); err != nil {
			return Result{ExitCode: -1}, status.Errorf(status.KindModuleError, "cwd: %v", err)
		} else if !fi.IsDir() {
			return Result{ExitCode: -1}, status.Errorf(status.KindModuleError, "cwd %s is not a directory", c.Dir)
		}
	}
	if len(spec.Env) > 0 {
		c.Env = append(os.Environ(), spec.Env...)
	}
	c.Stdin = spec.Stdin
	stdout, stderr := &Capped{Max: spec.MaxOutput}, &Capped{Max: spec.MaxOutput}
	c.Stdout, c.Stderr = stdout, stderr
	if w := modules.Output(ctx); w != nil {
		c.Stdout, c.Stderr = io.MultiWriter(stdout, w), io.MultiWriter(stderr, w)
	}
	if modules.JobProcessGroup(ctx) {
		// An async job's runner leads a process group of its own and the
		// command stays in it, so cancelling the job signals the whole
		// tree. The runner catches SIGTERM itself, and kills what is left
		// of the group once its result is safe.
		c.Cancel = func() error { return syscall.Kill(-syscall.Getpgrp(), syscall.SIGTERM) }
	} else {
		// The command and everything it starts share a new process
		// group, so a timeout or cancellation kills the whole tree.
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	}
	c.WaitDelay = 2 * time.Second

	start := time.Now()
	err := c.Start()
	if err == nil {
		if started := modules.ProcessStarted(ctx); started != nil && c.SysProcAttr != nil && c.SysProcAttr.Setpgid {
			started(c.Process.Pid) // the leader of the command's group
		}
		err = c.Wait()
	}
	res := Result{
		Stdout:     stdout.String(),
		Stderr:     stderr.String(),
		ExitCode:   c.ProcessState.ExitCode(),
		DurationMS: time.Since(start).Milliseconds(),
		Truncated:  stdout.Truncated() || stderr.Truncated(),
	}
	res.StdoutBase64, res.StderrBase64 = exactBytes(res.Stdout), exactBytes(res.Stderr)
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return res, status.Errorf(status.KindTimeout, "command killed after its deadline (%s)", time.Since(start).Round(time.Millisecond))
	case ctx.Err() != nil:
		return res, status.Errorf(status.KindCancelled, "command cancelled")
	case err == nil:
		return res, nil
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return res, status.Errorf(status.KindModuleError, "command %s", exitErr.ProcessState.String())
	}
	return res, status.Errorf(status.KindModuleError, "%v", err)
}

func argv(cmd any) ([]string, error) {
	switch v := cmd.(type) {
	case string:
		if strings.TrimSpace(v) == "" {
			return nil, status.Errorf(status.KindBadArgs, "run: parameter cmd: empty command line")
		}
		return []string{"/bin/sh", "-c", v}, nil
	case []any:
		if len(v) == 0 {
			return nil, status.Errorf(status.KindBadArgs, "run: parameter cmd: empty argv list")
		}
		out := make([]string, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, status.Errorf(status.KindBadArgs, "run: parameter cmd: element %d is not a string", i)
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, status.Errorf(status.KindBadArgs, "run: parameter cmd: want string or list")
}

// Capped is an io.Writer that keeps the first Max bytes written to it and
// counts the rest.
type Capped struct {
	Max     int
	buf     bytes.Buffer
	dropped int64
}

// Write implements io.Writer; it never fails.
func (c *Capped) Write(p []byte) (int, error) {
	room := c.Max - c.buf.Len()
	if room > len(p) {
		room = len(p)
	}
	if room > 0 {
		c.buf.Write(p[:room])
	}
	c.dropped += int64(len(p) - max(room, 0))
	return len(p), nil
}

// String returns what was kept.
func (c *Capped) String() string { return c.buf.String() }

// Truncated reports whether anything was dropped.
func (c *Capped) Truncated() bool { return c.dropped > 0 }

// envValue writes an environment value as a person would: strings as
// they are, numbers without exponents, anything else as JSON.
func envValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(data)
}
