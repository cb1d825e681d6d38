package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
	"github.com/overlordhq/overlord/target"
)

func (a *App) callCmd() *cobra.Command {
	var r callRun
	cmd := &cobra.Command{
		Use: "call TARGET MODULE.METHOD [ARG...] [-- WORD...]",
		// Words a newcomer types for "run a command on the fleet".
		SuggestFor: []string{"cmd", "run", "exec", "command", "execute"},
		Short:      "Call a module method on every minion a target matches",
		Long: `Call MODULE.METHOD on every minion TARGET matches, at most --forks at once,
record the call as a job in overlord.db and print each minion's result.

TARGET is comma-separated terms: a glob on minion names (web*), a
numeric range (web[1-10], web[01-10,15]), @group, failed:JOB or ok:JOB
(the minions that failed or succeeded in an earlier job, by ID or
prefix), or any of them with ! in front to exclude ('web*,!web3').
'overlord minion list TARGET' shows what a target matches.

--where narrows the target by the facts cached in overlord.db (refresh
them with 'overlord minion facts TARGET'): KEY OP VALUE with OP one of
= != < <= > >= ~ (a regular expression); a minion without the fact never
matches.

ARGs: key=value names a parameter; plain words fill the parameters a
method takes by position ('overlord modules TARGET MODULE' shows them;
command.run takes one, the command). A parameter that takes a string gets
the word as typed; otherwise a value that parses as JSON is JSON, and
anything else a string. A key the method does not have, more plain words
than it takes, or a word that looks like a flag is an error that shows
how to quote: the command is one word ('df -h'), or the words after --
(-- df -h /), which are joined, each quoted for the shell as typed. The
overlord's own flags work anywhere before --.

Standard input, when it is a pipe or a file, is the stdin of a method
that takes one (command.run) on every minion, unless stdin= is given or
-n: 'printf "a\n" | overlord call web1 command.run cat' prints a. A
terminal is never read. At most 4 MiB of UTF-8 text.

A plugin's arguments are typed by the description the minions gave
'overlord modules' (cached in overlord.db), as a built-in's are.

--timeout is how long the call waits for the minions, not a limit on the
command: minions still running when it passes carry on, and so does the
job, detached, to its end (within an hour). The call prints the results
it has, names the minions still running and how to follow them
('overlord job status ID --follow'), and exits 4. Ctrl-C does the same.
A command's own limit is command.run's timeout= argument, which kills it.

With --async the job is recorded and its ID printed at once, without
touching the network; a detached driver submits it to the minions, which
run it detached too. Poll it with 'overlord job status ID [--wait]'.
--timeout is then the whole job's deadline (default 1h). With --queue
too, a minion that cannot be reached (down, rebooting, off the network)
does not end unreachable after the few submit retries: its entry stays
RUNNING, queued, and the driver keeps probing it (1 s, then up to every
30 s) and gives it the job when it comes back, until the deadline.

Exit status: 0 every minion ok, 1 at least one failed, 2 usage or
configuration error, 3 the target matched no minion, 4 minions still
running when the wait ended (the job goes on).`,
		Example: `  overlord call '*' test.ping
  overlord call 'web*' command.run 'systemctl reload nginx'
  overlord call web1 command.run -- df -h /
  printf 'a\n' | overlord call 'web*' command.run cat
  overlord call @db command.run '["pg_isready", "-q"]' timeout=10s -o json
  overlord call 'web*,!web3' test.sleep 2 --forks 16 --timeout 5s -o ndjson
  overlord call db1 command.run 'pg_dump app > /srv/app.sql' --timeout 10s  # exit 4: goes on
  overlord call web1 command.run 'make test' timeout=10m   # killed after 10 minutes
  overlord call --where os=debian --where 'memory_bytes>=8e9' '*' test.ping
  id=$(overlord call 'web*' command.run 'make -C /srv deploy' --async)
  overlord job status "$id" --wait
  overlord call 'web*' command.run 'apt-get -y upgrade' --async --queue --timeout 24h`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			mod, meth, ok := strings.Cut(args[1], ".")
			if !ok || mod == "" || meth == "" {
				return usageError("want MODULE.METHOD, got %q (for example test.ping)", args[1])
			}
			r.spec.Target, r.spec.Module, r.spec.Method, r.spec.Words = args[0], mod, meth, methodWords(cmd, args, 2)
			return a.call(cmd, r)
		},
	}
	words := guardWords(cmd, 2, func() []string { return a.args }, func(args []string) string {
		rest, typed := strings.Join(args[2:], " "), modules.ShellWords(args[2:])
		if rest != typed {
			// A word with a space or a quote in it: only -- gives the
			// words back as typed.
			return fmt.Sprintf("put the words it goes with after -- (overlord call %s %s -- %s)",
				modules.ShellQuote(args[0]), args[1], typed)
		}
		return fmt.Sprintf("put the words it goes with after -- (overlord call %s %s -- %s) or quote them as one word (%s)",
			modules.ShellQuote(args[0]), args[1], rest, modules.ShellQuote(rest))
	})
	r.flags(cmd, words)
	a.directFlag(cmd)
	return cmd
}

// callRun is a call as its command's flags and arguments say.
type callRun struct {
	format string
	spec   overlord.CallSpec // with Target, Module, Method and Words
	async  bool
	queue  bool
	// timeoutSet: a --timeout was given (with --async, the job's
	// deadline; 1h if not).
	timeoutSet bool
	raw        bool
	noStdin    bool
	disp       display
}

// flags adds the flags call and script share to cmd, into r.
func (r *callRun) flags(cmd *cobra.Command, words *wordGuard) {
	f := cmd.Flags()
	f.BoolVar(&r.async, "async", false, "print the job ID at once and run the job detached")
	f.BoolVar(&r.queue, "queue", false, "with --async: a minion that cannot be reached gets the job when it comes back, until the deadline, instead of ending unreachable")
	f.StringArrayVar(&r.spec.Where, "where", nil, "only minions whose cached facts match KEY OP VALUE (OP: = != < <= > >= ~); repeatable")
	f.IntVar(&r.spec.Forks, "forks", fanout.DefaultForks, "at most this many calls at once")
	f.DurationVar(&r.spec.Timeout, "timeout", overlord.DefaultCallTimeout, "how long to wait for the minions (those still running go on, exit 4); with --async, the whole job's deadline, 1h if not given")
	f.DurationVar(&r.spec.ConnectTimeout, "connect-timeout", overlord.DefaultConnectTimeout, "time limit to connect to each minion")
	batchFlags(cmd, &r.spec)
	rawFlag(cmd, &r.raw)
	outputFlag(cmd, &r.format)
	displayFlags(cmd, &r.disp)
	words.noStdinFlag(&r.noStdin)
}

// call runs or submits a call: the body of call and script.
func (a *App) call(cmd *cobra.Command, r callRun) error {
	spec := r.spec
	if r.queue && !r.async {
		return usageError("--queue needs --async: only an async job waits for minions to come back (add --async, and follow the job with 'overlord job status ID')")
	}
	if spec.Forks < 1 {
		return usageError("--forks must be at least 1, got %d", spec.Forks)
	}
	if spec.Timeout <= 0 {
		return usageError("--timeout must be positive, got %s", spec.Timeout)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--timeout", spec.Timeout}, {"--connect-timeout", spec.ConnectTimeout}, {"--batch-wait", spec.Batch.Wait}} {
		if d.v > overlord.MaxWait {
			return usageError("%s %s is more than %s, the longest a minion keeps a job", d.flag, d.v, overlord.MaxWait)
		}
	}
	if err := checkRaw(r.raw, r.format); err != nil {
		return err
	}
	spec.Stdin = a.pipedStdin(r.noStdin)
	spec.OnBatch = r.disp.Batch // the progress line's "batch k/n"

	o := a.overlordVia(cmd)
	p, err := a.prepare(o, spec)
	if err != nil {
		if msg, ok := overlord.PrepareMessage(spec, err); ok {
			return usageError("%s", msg)
		}
		return err
	}
	if r.async {
		timeout := overlord.DefaultAsyncTimeout
		if r.timeoutSet || cmd.Flags().Changed("timeout") {
			timeout = spec.Timeout
		}
		var opts []overlord.SubmitOption
		if r.queue {
			opts = append(opts, overlord.Queue())
		}
		rec, err := o.Submit(p, timeout, opts...)
		if rec.ID == "" {
			return err
		}
		if perr := a.printSubmitted(r.format, rec.ID, rec.State); perr != nil {
			return perr
		}
		return err
	}
	return a.runPrinted(r.format, r.raw, &r.disp, p.JobID, len(p.Minions), func(onResult func(string, status.Result)) (status.Job, error) {
		return o.Call(cmd.Context(), p, onResult)
	})
}

// pipedStdin returns what a call may read as its method's stdin: the
// overlord's standard input when it is a pipe or a regular file (never a
// terminal, /dev/null or another device), nil with -n. A reader that is
// not a file (a command run in-process) is read as given.
func (a *App) pipedStdin(no bool) io.Reader {
	if no || a.Stdin == nil {
		return nil
	}
	f, ok := a.Stdin.(*os.File)
	if !ok {
		return a.Stdin
	}
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	if m := fi.Mode(); m.IsRegular() || m&os.ModeNamedPipe != 0 {
		return f
	}
	return nil
}

// methodWords returns the arguments after the first n as the method's
// words, with the -- the user typed among them kept as modules.Dash
// (cobra takes it out).
func methodWords(cmd *cobra.Command, args []string, n int) []string {
	words := append([]string(nil), args[n:]...)
	if at := cmd.ArgsLenAtDash(); at >= 0 {
		at = max(at, n) - n
		words = append(append(append([]string(nil), words[:at]...), modules.Dash), words[at:]...)
	}
	return words
}

// wordGuard keeps the words a command passes on (call's after
// MODULE.METHOD, script's after FILE) from being taken for its help or
// its flags by mistake.
//
// Cobra reads flags anywhere among the arguments, which is what lets the
// overlord's own flags work anywhere (call '*' test.ping -o json). But a
// word meant for the method that looks like a flag would be help (-h in
// `command.run df -h`: exit 0, nothing run) or cobra's "unknown
// shorthand flag" for ls -la, with no word on how to pass it on. pflag
// collects the plain arguments as it goes, so when it meets a flag, how
// many it has collected (FlagSet.Args) says whether the flag came after
// the first n arguments. The command's help flag is a wordGuard value
// that makes that check on Set, its flag error function makes it for
// unknown flags, and -n (--no-stdin, also head -n and echo -n) makes it
// too; after the first n arguments each is a usage error (exit 2) that
// shows how to quote the words or put them after --. -h before them is
// help as usual.
type wordGuard struct {
	cmd  *cobra.Command
	n    int
	hint func(args []string) string // how to pass words on, for args with the flag in place
	help bool                       // help asked for before the first n arguments

	stray string // a flag-like word after the first n arguments: "-h"
	at    int    // how many plain arguments came before it

	noStdin   *bool
	noStdinAt int // how many plain arguments came before -n, -1 if not given
	raw       func() []string
}

// guardWords installs a wordGuard on cmd, whose first n arguments are
// its own (TARGET MODULE.METHOD).
func guardWords(cmd *cobra.Command, n int, raw func() []string, hint func(args []string) string) *wordGuard {
	g := &wordGuard{cmd: cmd, n: n, hint: hint, noStdinAt: -1, raw: raw}
	help := cmd.Flags().VarPF(g, "help", "h", "help for "+cmd.Name())
	help.NoOptDefVal = "true"
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		var ne *pflag.NotExistError
		if plain := len(c.Flags().Args()); errors.As(err, &ne) && plain >= n {
			word := "--" + ne.GetSpecifiedName()
			if ne.GetSpecifiedShortnames() != "" {
				word = "-" + ne.GetSpecifiedShortnames()
			}
			return g.strayError(word, append(c.Flags().Args(), g.after(word)...), plain)
		}
		return &ExitError{Code: status.ExitUsage, Err: err}
	})
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if err := g.check(args); err != nil {
			return err
		}
		if prev != nil {
			return prev(c, args)
		}
		return nil
	}
	return g
}

// after returns the words that follow the stray flag word on the command
// line, which pflag stopped at: up to `--` or a flag of the command (so
// that `ls -la /tmp` is suggested whole). Nil without the command line.
func (g *wordGuard) after(word string) []string {
	if g.raw == nil {
		return nil
	}
	raw := g.raw()
	i := slices.Index(raw, word)
	if i < 0 {
		return nil
	}
	var out []string
	for _, w := range raw[i+1:] {
		if w == "--" || g.isFlag(w) {
			break
		}
		out = append(out, w)
	}
	return out
}

// isFlag reports whether w names one of the command's own flags.
func (g *wordGuard) isFlag(w string) bool {
	fs := g.cmd.Flags()
	name, _, _ := strings.Cut(strings.TrimLeft(w, "-"), "=")
	switch {
	case strings.HasPrefix(w, "--"):
		return fs.Lookup(name) != nil
	case strings.HasPrefix(w, "-") && len(w) == 2:
		return fs.ShorthandLookup(w[1:]) != nil
	}
	return false
}

// String, Set and Type make the guard the command's help flag.
func (g *wordGuard) String() string { return strconv.FormatBool(g.help) }
func (g *wordGuard) Type() string   { return "bool" }
func (g *wordGuard) Set(v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return err
	}
	if plain := len(g.cmd.Flags().Args()); plain >= g.n {
		if g.stray == "" {
			g.stray, g.at = "-h", plain
		}
		return nil
	}
	g.help = b
	return nil
}

// noStdinFlag adds -n, --no-stdin.
func (g *wordGuard) noStdinFlag(no *bool) {
	g.noStdin = no
	f := g.cmd.Flags().VarPF(noStdinValue{g}, "no-stdin", "n", "do not send standard input as the method's stdin (like ssh -n)")
	f.NoOptDefVal = "true"
}

type noStdinValue struct{ g *wordGuard }

func (v noStdinValue) String() string { return strconv.FormatBool(v.g.noStdin != nil && *v.g.noStdin) }
func (v noStdinValue) Type() string   { return "bool" }
func (v noStdinValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*v.g.noStdin = b
	v.g.noStdinAt = len(v.g.cmd.Flags().Args())
	return nil
}

// check returns the usage error of a flag-like word among the words
// passed on: -h or --help after the first n arguments, or -n between
// two of the words (`echo -n hi`; at their end it is the overlord's).
func (g *wordGuard) check(args []string) error {
	if g.stray != "" {
		return g.strayError(g.stray, args, g.at)
	}
	dash := g.cmd.ArgsLenAtDash()
	if at := g.noStdinAt; at > g.n && at < len(args) && (dash < 0 || at < dash) {
		return g.strayError("-n", args, at)
	}
	return nil
}

// strayError says that word, found after at of args, is not for the
// overlord there, and how to pass it on.
func (g *wordGuard) strayError(word string, args []string, at int) error {
	with := append(append(append([]string(nil), args[:at]...), word), args[at:]...)
	var what string
	switch word {
	case "-h":
		what = "is a word for " + args[g.n-1] + ", not a request for help"
	case "-n":
		what = "would be the overlord's --no-stdin, not a word for " + args[g.n-1]
	default:
		what = "is not a flag of 'overlord " + g.cmd.Name() + "'"
	}
	return usageError("%s after %s %s: %s", word, args[g.n-1], what, g.hint(with))
}

// exitFor returns nil for exit code 0, else an ExitError.
func exitFor(code int) error {
	if code == status.ExitOK {
		return nil
	}
	return &ExitError{Code: code}
}

// printSubmitted prints the ID and state of a job just submitted.
func (a *App) printSubmitted(format, id string, state status.State) error {
	v := struct {
		JobID string       `json:"job_id"`
		State status.State `json:"state"`
	}{id, state}
	switch format {
	case formatJSON:
		return writeJSON(a.Stdout, v)
	case formatNDJSON:
		return writeJSONLine(a.Stdout, v)
	case formatYAML:
		return writeYAML(a.Stdout, v)
	}
	_, err := fmt.Fprintln(a.Stdout, id)
	return err
}

// runPrinted runs a recorded fan-out (call, cp, fetch) of total minions,
// printing each minion's result as it arrives and the job at the end, and
// returns the job's exit status. While it runs, d's progress line is on
// stderr (a terminal); it is gone before the summary. Results printed but
// not recorded are a warning, and a reader that went away (| head) does
// not stop the run. A run cut short (Ctrl-C) prints what it received.
func (a *App) runPrinted(format string, raw bool, d *display, jobID string, total int, run func(onResult func(string, status.Result)) (status.Job, error)) error {
	pr, err := a.newJobPrinter(format, raw, d)
	if err != nil {
		return err
	}
	defer pr.outDir.Close()
	pr.jobID = jobID
	live, w := a.startProgress(d, jobID, total, time.Now())
	if live != nil {
		pr.w, pr.live = w, live
	}
	var printErr error
	job, err := run(func(name string, r status.Result) {
		if printErr == nil {
			printErr = pr.Result(name, r)
		} else {
			pr.keep(name, r) // stdout is gone: still count it, write its files
		}
	})
	stopProgress(d, live)
	pr.w, pr.live = a.Stdout, nil
	if job.JobID == "" {
		return err
	}
	if printErr == nil {
		printErr = pr.Done(job)
	}
	if errors.Is(err, overlord.ErrNotRecorded) {
		// The run itself happened: its results are printed, and its exit
		// status says how it went. Do not suggest a retry.
		fmt.Fprintf(a.Stderr, "warning: %v\n", err)
	} else if err != nil {
		return err
	}
	if printErr != nil && !errors.Is(printErr, syscall.EPIPE) {
		return printErr
	}
	if pr.outErr != nil {
		return pr.outErr
	}
	if job.State != status.Finished {
		a.stillRunning(job)
		return exitFor(status.ExitWaitTimeout)
	}
	return exitFor(job.Summary.ExitCode())
}

// stillRunning tells the user that a synchronous call stopped waiting for
// minions that go on, and how to follow them.
func (a *App) stillRunning(job status.Job) {
	var open []string
	for name, r := range job.Minions {
		if r.State != status.Finished {
			open = append(open, name)
		}
	}
	slices.Sort(open)
	shown := open
	if len(shown) > 10 {
		shown = shown[:10]
	}
	list := strings.Join(shown, ", ")
	if len(open) > len(shown) {
		list += fmt.Sprintf(" and %d more", len(open)-len(shown))
	}
	noun := "minions are"
	if len(open) == 1 {
		noun = "minion is"
	}
	fmt.Fprintf(a.Stderr, "%d %s still running (%s): the job goes on without this command.\n", len(open), noun, list)
	fmt.Fprintf(a.Stderr, "Follow it:  overlord job status %s --follow\nStop it:    overlord job cancel %s\n", job.JobID, job.JobID)
}

// prepare is o.Prepare, with a note on stderr for each minion --where
// left out untested (its facts are not known), as 'minion list' prints
// them.
func (a *App) prepare(o *overlord.Overlord, spec overlord.CallSpec) (*overlord.Prepared, error) {
	p, err := o.Prepare(spec)
	if p != nil {
		for _, n := range p.Notes {
			fmt.Fprintf(a.Stderr, "note: %s\n", n)
		}
	}
	if err == nil {
		a.noteUnknownNames(o, spec.Target)
	}
	return p, err
}

// noteUnknownNames prints a note for each name the target includes by
// name alone that no minion has ('web1,wbe2': wbe2), with the name it
// likely means: the rest of the target runs, but a typo is not silent.
func (a *App) noteUnknownNames(o *overlord.Overlord, expr string) {
	plain := target.PlainNames(expr)
	if len(plain) == 0 {
		return
	}
	inv, err := o.Store.Inventory()
	if err != nil {
		return
	}
	names := make([]string, len(inv.Minions))
	known := make(map[string]bool, len(inv.Minions))
	for i, m := range inv.Minions {
		names[i], known[m.Name] = m.Name, true
	}
	for _, n := range plain {
		if known[n] {
			continue
		}
		msg := "note: no minion is named " + n + ": left out of the target"
		if _, ok := inv.Groups[n]; ok {
			msg += "; " + n + " is a group: did you mean @" + n + "?"
		} else if alt, ok := modules.Closest(n, names); ok {
			msg += "; did you mean " + alt + "?"
		}
		fmt.Fprintln(a.Stderr, msg)
	}
}
