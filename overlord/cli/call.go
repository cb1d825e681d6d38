package cli

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

func (a *App) callCmd() *cobra.Command {
	var (
		format string
		spec   overlord.CallSpec
		async  bool
		raw    bool
		disp   display
	)
	cmd := &cobra.Command{
		Use: "call TARGET MODULE.METHOD [ARG...]",
		// Words a newcomer types for "run a command on the fleet".
		SuggestFor: []string{"cmd", "run", "exec", "command", "execute"},
		Short:      "Call a module method on every minion a target matches",
		Long: `Call MODULE.METHOD on every minion TARGET matches, at most --forks at once,
record the call as a job in overlord.db and print each minion's result.

TARGET is comma-separated terms: a glob on minion names (web*, db[1-3]),
@group, or either with ! in front to exclude ('web*,!web3').

--where narrows the target by the facts cached in overlord.db (refresh
them with 'overlord minion facts TARGET'): KEY OP VALUE with OP one of
= != < <= > >= ~ (a regular expression); a minion without the fact never
matches.

ARGs fill the method's parameters in order; key=value names one. A value
that parses as JSON is JSON, otherwise it is a string; a parameter that
takes a string gets the word as typed.

--timeout is how long the call waits for the minions, not a limit on the
command: minions still running when it passes carry on, and so does the
job, detached, to its end (within an hour). The call prints the results
it has, names the minions still running and how to follow them
('overlord job status ID --follow'), and exits 4. Ctrl-C does the same.
A command's own limit is command.run's timeout= argument, which kills it.

With --async the job is recorded and its ID printed at once, without
touching the network; a detached driver submits it to the minions, which
run it detached too. Poll it with 'overlord job status ID [--wait]'.
--timeout is then the whole job's deadline (default 1h).

Exit status: 0 every minion ok, 1 at least one failed, 2 usage or
configuration error, 3 the target matched no minion, 4 minions still
running when the wait ended (the job goes on).`,
		Example: `  overlord call '*' test.ping
  overlord call 'web*' command.run 'systemctl reload nginx'
  overlord call @db command.run '["pg_isready", "-q"]' timeout=10s -o json
  overlord call 'web*,!web3' test.sleep 2 --forks 16 --timeout 5s -o ndjson
  overlord call db1 command.run 'pg_dump app > /srv/app.sql' --timeout 10s  # exit 4: goes on
  overlord call web1 command.run 'make test' timeout=10m   # killed after 10 minutes
  overlord call --where os=debian --where 'memory_bytes>=8e9' '*' test.ping
  id=$(overlord call 'web*' command.run 'make -C /srv deploy' --async)
  overlord job status "$id" --wait`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			mod, meth, ok := strings.Cut(args[1], ".")
			if !ok || mod == "" || meth == "" {
				return usageError("want MODULE.METHOD, got %q (for example test.ping)", args[1])
			}
			if spec.Forks < 1 {
				return usageError("--forks must be at least 1, got %d", spec.Forks)
			}
			if spec.Timeout <= 0 {
				return usageError("--timeout must be positive, got %s", spec.Timeout)
			}
			if err := checkRaw(raw, format); err != nil {
				return err
			}
			spec.Target, spec.Module, spec.Method, spec.Words = args[0], mod, meth, args[2:]

			o := a.overlord()
			p, err := o.Prepare(spec)
			if err != nil {
				var se *status.Error
				if errors.As(err, &se) {
					return usageError("%s.%s: %s", mod, meth, strings.TrimPrefix(se.Message, meth+": "))
				}
				return err
			}
			if async {
				timeout := overlord.DefaultAsyncTimeout
				if cmd.Flags().Changed("timeout") {
					timeout = spec.Timeout
				}
				rec, err := o.Submit(p, timeout)
				if rec.ID == "" {
					return err
				}
				if perr := a.printSubmitted(format, rec.ID, rec.State); perr != nil {
					return perr
				}
				return err
			}
			return a.runPrinted(format, raw, &disp, p.JobID, len(p.Minions), func(onResult func(string, status.Result)) (status.Job, error) {
				return o.Call(cmd.Context(), p, onResult)
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&async, "async", false, "print the job ID at once and run the job detached")
	f.StringArrayVar(&spec.Where, "where", nil, "only minions whose cached facts match KEY OP VALUE (OP: = != < <= > >= ~); repeatable")
	f.IntVar(&spec.Forks, "forks", fanout.DefaultForks, "at most this many calls at once")
	f.DurationVar(&spec.Timeout, "timeout", overlord.DefaultCallTimeout, "how long to wait for the minions (those still running go on, exit 4); with --async, the whole job's deadline, 1h if not given")
	f.DurationVar(&spec.ConnectTimeout, "connect-timeout", overlord.DefaultConnectTimeout, "time limit to connect to each minion")
	rawFlag(cmd, &raw)
	outputFlag(cmd, &format)
	displayFlags(cmd, &disp)
	return cmd
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
