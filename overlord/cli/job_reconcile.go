package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

func (a *App) jobReconcileCmd() *cobra.Command {
	var (
		format string
		raw    bool
	)
	cmd := &cobra.Command{
		Use:   "reconcile JOB",
		Short: "Replace results the overlord gave up on with the minions' own",
		Long: `Ask the minions of a FINISHED job for the results the overlord gave up
on: entries that ended unreachable or timeout after their minion job was
submitted (a minion out of reach for a minute, a deadline passed). A
minion that answers with its job FINISHED (and not lost) gives its own
result, which replaces the entry, marked reconciled, with the error it
had kept as error_before_reconcile; the job's summary follows. A minion
still out of reach, or whose job still runs, leaves its entry as it is:
reconcile again later. JOB is a job ID or a unique prefix of one.

Then prints the job as 'overlord job status JOB' does, and exits as it
does. It works on jobs of any age, as long as the minion still keeps its
job (minion serve --job-retention, 7 days by default).

Exit status: 0 every minion ok, 1 at least one failed, 4 the job is not
FINISHED (wait for it first) or its driver lock is held.`,
		Example: `  overlord job reconcile 019a2b3c
  overlord job reconcile 019a2b3c -o json | jq '.minions[] | select(.reconciled)'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRaw(raw, format); err != nil {
				return err
			}
			o := a.overlord()
			rec, n, err := o.Reconcile(cmd.Context(), args[0])
			if errors.Is(err, overlord.ErrNotFinished) || errors.Is(err, overlord.ErrBeingDriven) {
				return &ExitError{Code: status.ExitWaitTimeout, Err: err}
			} else if err != nil {
				return err
			}
			fmt.Fprintf(a.Stderr, "job %s: %d entr%s reconciled\n", rec.ID, n, pluralY(n))
			_, entries, err := o.Store.Job(rec.ID)
			if err != nil {
				return err
			}
			job := rec.Status(entries)
			if err := a.printJob(format, raw, nil, job); err != nil {
				return err
			}
			return exitFor(job.Summary.ExitCode())
		},
	}
	rawFlag(cmd, &raw)
	outputFlag(cmd, &format)
	return cmd
}

// pluralY is the ending of "entry" for n of them: y or ies.
func pluralY(n int) string {
	if n == 1 {
		return "y"
	}
	return "ies"
}
