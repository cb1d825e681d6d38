package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/internal/termtext"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

// How often `job status --wait` looks at the store, and how often it
// checks that the job's driver is alive.
const (
	waitFirst      = 100 * time.Millisecond
	waitMax        = time.Second
	driverCheckGap = 2 * time.Second
)

func (a *App) jobStatusCmd() *cobra.Command {
	var (
		format       string
		wait, follow bool
		raw          bool
		timeout      time.Duration
		disp         display
	)
	cmd := &cobra.Command{
		Use:   "status JOB [--wait [--timeout DUR]] [--follow]",
		Short: "Show a job and every minion's result",
		Long: `Show a job and every minion's result, read from overlord.db. JOB is a job
ID or a unique prefix of one.

An async job that is not FINISHED and whose driver is gone (killed,
rebooted) gets a new driver, which carries on with the same minion jobs:
nothing runs twice.

--wait blocks until the job is FINISHED; with --timeout, exit 4 if it is
not by then. --follow (implies --wait) streams the output of running minion
jobs as it grows, each line prefixed with the minion's name; with -o json
or yaml the stream goes to stderr so stdout stays one document.

Exit status: 0 every minion ok, 1 at least one failed, 4 the job is not
FINISHED (still running, or --wait gave up; the job goes on).`,
		Example: `  overlord job status 019a2b3c
  overlord job status 019a2b3c --wait --timeout 10m -o json
  overlord job status 019a2b3c --follow`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout < 0 {
				return usageError("--timeout must not be negative")
			}
			if raw && !follow {
				// With --follow, --raw applies to the stream, text whatever -o.
				if err := checkRaw(raw, format); err != nil {
					return err
				}
			}
			o := a.overlordVia(cmd)
			rec, entries, err := o.Store.Job(args[0])
			if err != nil {
				return err
			}
			if started, err := o.EnsureDriver(rec); err != nil {
				return err
			} else if started {
				fmt.Fprintf(a.Stderr, "job %s had lost its driver; a new one carries it on\n", rec.ID)
			} else if !rec.Async && rec.State != status.Finished {
				// A synchronous job may just have been settled.
				if rec, entries, err = o.Store.Job(rec.ID); err != nil {
					return err
				}
			}
			if wait || follow {
				ctx := cmd.Context()
				if timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, timeout)
					defer cancel()
				}
				var live *progressLine
				stdout := a.Stdout
				if rec.State != status.Finished {
					live, stdout = a.startProgress(&disp, rec.ID, len(entries), rec.CreatedAt)
				}
				var stream io.Writer
				if follow {
					stream = stdout
					if format == formatJSON || format == formatYAML || format == formatNDJSON {
						stream = a.Stderr
						if live != nil {
							stream = live // the terminal the line is on
						}
					}
				}
				rec, entries, err = a.waitJob(ctx, o, rec, entries, stream, raw, live)
				stopProgress(&disp, live)
				if err != nil {
					return err
				}
			}
			job := rec.Status(entries)
			if err := a.printJob(format, raw, &disp, job); err != nil {
				return err
			}
			if (wait || follow) && job.State != status.Finished {
				if cmd.Context().Err() != nil {
					return &ExitError{Code: status.ExitWaitTimeout, Err: fmt.Errorf("interrupted; job %s is still %s and goes on", job.JobID, job.State)}
				}
				return &ExitError{Code: status.ExitWaitTimeout, Err: fmt.Errorf("job %s is still %s after %s", job.JobID, job.State, timeout)}
			}
			return exitFor(job.Summary.ExitCode())
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "block until the job is FINISHED")
	cmd.Flags().BoolVar(&follow, "follow", false, "stream running minion jobs' output (implies --wait)")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with --wait, give up after this long (exit 4); 0 waits for ever")
	cmd.Flags().BoolVar(&raw, "raw", false, "text output and the --follow stream: print minions' output byte for byte, control characters included (by default they are shown as ^[, ^G, ...)")
	outputFlag(cmd, &format)
	displayFlags(cmd, &disp)
	a.directFlag(cmd)
	return cmd
}

// printJob prints a stored job, every minion then the summary, in format
// with d's display flags (d may be nil): what job status prints.
func (a *App) printJob(format string, raw bool, d *display, job status.Job) error {
	pr, err := a.newJobPrinter(format, raw, d)
	if err != nil {
		return err
	}
	defer pr.outDir.Close()
	if err := pr.All(job); err != nil {
		return err
	}
	return pr.outErr
}

// waitJob polls overlord.db until the job is FINISHED or ctx is done,
// restarting the job's driver if it dies, and with stream set, copies
// the minion jobs' new output there.
func (a *App) waitJob(ctx context.Context, o *overlord.Overlord, rec jobs.Record, entries map[string]status.Result, stream io.Writer, raw bool, live *progressLine) (jobs.Record, map[string]status.Result, error) {
	var follower *overlord.Follower
	emit := func(minion, lines string) {
		if !raw {
			lines = termtext.Visible(lines)
		}
		for _, line := range strings.SplitAfter(lines, "\n") {
			if line != "" {
				fmt.Fprintf(stream, "%s| %s", minion, line)
			}
		}
	}
	// A job already FINISHED has its results in the store: nothing to
	// follow, no minion to ask.
	if stream != nil && rec.State != status.Finished {
		f, err := o.Follower(rec)
		if err != nil {
			return rec, entries, err
		}
		defer f.Close()
		defer f.Flush(emit)
		follower = f
	}
	interval := waitFirst
	lastCheck := time.Now()
	for {
		if live != nil {
			for name, r := range entries {
				live.Result(name, r)
			}
		}
		if follower != nil {
			follower.Read(ctx, entries, emit)
		}
		if rec.State == status.Finished {
			return rec, entries, nil
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return rec, entries, nil
		case <-t.C:
		}
		interval = min(interval*2, waitMax)
		r, e, err := o.Store.Job(rec.ID)
		if err != nil {
			return rec, entries, err
		}
		rec, entries = r, e
		if time.Since(lastCheck) >= driverCheckGap {
			lastCheck = time.Now()
			if started, err := o.EnsureDriver(rec); err != nil {
				return rec, entries, err
			} else if started {
				fmt.Fprintf(a.Stderr, "job %s had lost its driver; a new one carries it on\n", rec.ID)
			}
		}
	}
}
