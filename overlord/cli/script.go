package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/command"
)

func (a *App) scriptCmd() *cobra.Command {
	var r callRun
	cmd := &cobra.Command{
		Use:   "script TARGET FILE [ARG...] [-- ARG...]",
		Short: "Run a local script on every minion a target matches",
		Long: `Run the script FILE on every minion TARGET matches: its content travels
with the call (command.script), each minion writes it to a private
temporary file, runs it with the interpreter of its #! line and the ARGs,
and removes it. A script without a #! line is refused, and so is one of
more than 1 MiB.

The ARGs are passed to the script as they are; a flag-like one goes after
-- (overlord script web1 deploy.sh -- --force), as the overlord's own
flags work anywhere before --.

Everything else is as for 'overlord call': TARGET and --where, the job
recorded in overlord.db, --async and --queue, every output format, and
standard input, when it is a pipe or a file, as the script's standard
input (-n: none). See 'overlord call --help'.

--timeout is how long the command waits for the minions, not a limit on
the script: minions still running when it passes carry on, the job goes
on detached, and the command names them and how to follow them, and
exits 4, as 'overlord call' does. Ctrl-C does the same.

Exit status: 0 every minion ok, 1 at least one failed (a non-zero exit
of the script included), 2 usage or configuration error, 3 the target
matched no minion, 4 minions still running when the wait ended (the job
goes on).`,
		Example: `  overlord script 'web*' ./check-disk.sh
  overlord script @db ./rotate.sh --async -- --keep 7
  overlord script web1 ./report.py -o json
  tar c conf | base64 | overlord script 'web*' ./install-conf.sh /etc/app  # stdin is text: it runs base64 -d | tar x -C "$1"`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			content, err := readScript(args[1])
			if err != nil {
				return err
			}
			// Cobra has taken out the first --; the arguments are the
			// rest, as they are.
			list, err := json.Marshal(append([]string{}, args[2:]...))
			if err != nil {
				return err
			}
			r.spec.Target, r.spec.Module, r.spec.Method = args[0], "command", "script"
			r.spec.Words = []string{"script=" + content, "args=" + string(list)}
			return a.call(cmd, r)
		},
	}
	words := guardWords(cmd, 2, func() []string { return a.args }, func(args []string) string {
		return fmt.Sprintf("put the script's arguments after -- (overlord script %s %s -- %s)",
			modules.ShellQuote(args[0]), modules.ShellQuote(args[1]), modules.ShellWords(args[2:]))
	})
	r.flags(cmd, words)
	a.directFlag(cmd)
	return cmd
}

// readScript returns the content of the script file at path, checked as
// command.script will: at most command.MaxScript bytes of UTF-8 text
// starting with a #! line.
func readScript(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", usageError("script: %v", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return "", usageError("script: %v", err)
	} else if fi.IsDir() {
		return "", usageError("script: %s is a directory", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, command.MaxScript+1))
	if err != nil {
		return "", usageError("script: %v", err)
	}
	switch {
	case len(data) > command.MaxScript:
		return "", usageError("script: %s is more than %d bytes (1 MiB): copy it to the minions with 'overlord cp' and run it with command.run", path, command.MaxScript)
	case !utf8.Valid(data):
		return "", usageError("script: %s is not UTF-8 text, which a call cannot carry: copy it to the minions with 'overlord cp' and run it with command.run", path)
	}
	if _, err := command.Interpreter(string(data)); err != nil {
		return "", usageError("script: %s: %v", path, err)
	}
	return string(data), nil
}
