package command

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/status"
)

// MaxScript is the largest script command.script runs, in bytes.
const MaxScript = 1 << 20

func scriptMethod() *modules.Method {
	return &modules.Method{
		Name: "script",
		Doc: "Run a script sent with the call (what 'overlord script' sends): it is written to a private temporary file " +
			"(a new 0700 directory in the minion's temporary directory), run by the interpreter its #! line names " +
			"with the file's path and args as its arguments, and removed when it ends. " +
			"A script without a #! line is bad_args. Otherwise as command.run: a non-zero exit is a module_error that still carries the output.",
		Returns: "{stdout, stderr, exit_code, duration_ms, truncated, stdout_base64, stderr_base64}",
		Params: append([]modules.Param{
			{Name: "script", Type: modules.String, Required: true,
				Doc: "the script's content, starting with a #! line such as #!/bin/sh; at most 1048576 bytes (1 MiB)"},
			{Name: "args", Type: modules.List, Doc: `the script's arguments, a list of strings such as ["-v", "web"]`},
		}, processParams()...),
		Positional: 1,
		Run:        runScript,
	}
}

func runScript(ctx context.Context, a modules.Args) (any, error) {
	script := a.String("script")
	if len(script) > MaxScript {
		return nil, status.Errorf(status.KindBadArgs, "script: parameter script: %d bytes, at most %d", len(script), MaxScript)
	}
	interp, err := Interpreter(script)
	if err != nil {
		return nil, status.Errorf(status.KindBadArgs, "script: %v", err)
	}
	var args []string
	for i, v := range a.List("args") {
		s, ok := v.(string)
		if !ok {
			return nil, status.Errorf(status.KindBadArgs, "script: parameter args: element %d is not a string", i)
		}
		args = append(args, s)
	}

	// A directory of its own (0700, made with a name no one else has)
	// and a file created in it that did not exist: nobody else can put
	// or change anything in what the interpreter reads.
	dir, err := os.MkdirTemp("", "overlord-script-")
	if err != nil {
		return nil, status.Errorf(status.KindModuleError, "script: %v", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "script")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o700)
	if err != nil {
		return nil, status.Errorf(status.KindModuleError, "script: %v", err)
	}
	if _, err := f.WriteString(script); err != nil {
		f.Close()
		return nil, status.Errorf(status.KindModuleError, "script: writing %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, status.Errorf(status.KindModuleError, "script: writing %s: %v", path, err)
	}
	// The interpreter is started with the script's path as the kernel
	// would for an executable script, rather than the file executed: a
	// file just written can be "text file busy" to execve while another
	// goroutine's fork still holds its descriptor.
	argv := append(append(interp, path), args...)
	return execArgs(ctx, "script", argv, a)
}

// Interpreter returns the interpreter of a script and its optional
// argument, as the kernel reads a #! line: the path up to the first space
// or tab, and the rest of the line, trimmed, as one argument.
func Interpreter(script string) ([]string, error) {
	if !strings.HasPrefix(script, "#!") {
		return nil, fmt.Errorf("the script has no #! line: start it with the interpreter to run it, such as #!/bin/sh")
	}
	line, _, _ := strings.Cut(script[2:], "\n")
	if strings.HasSuffix(line, "\r") {
		return nil, fmt.Errorf("the script's #! line ends with a carriage return (Windows line endings): convert it, as with dos2unix")
	}
	line = strings.Trim(line, " \t")
	if line == "" {
		return nil, fmt.Errorf("the script's #! line names no interpreter")
	}
	interp, arg := line, ""
	if i := strings.IndexAny(line, " \t"); i >= 0 {
		interp, arg = line[:i], line[i+1:]
	}
	if !filepath.IsAbs(interp) {
		return nil, fmt.Errorf("the script's #! line names %q: the interpreter must be an absolute path, such as /bin/sh or /usr/bin/env python3", interp)
	}
	if arg = strings.Trim(arg, " \t"); arg != "" {
		return []string{interp, arg}, nil
	}
	return []string{interp}, nil
}
