package cli

import (
	"github.com/spf13/cobra"
)

func (a *App) jobStatusCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "status JOB",
		Short: "Show a job and every minion's result",
		Long: `Show a job and every minion's result, read from overlord.db. JOB is a job
ID or a unique prefix of one. Exit status: 0 every minion ok, 1 at least
one failed.`,
		Example: `  overlord job status 019a2b3c
  overlord job status 019a2b3c-... -o json | jq '.minions | map_values(.ok)'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rec, entries, err := a.overlord().Store.Job(args[0])
			if err != nil {
				return err
			}
			job := rec.Status(entries)
			pr := &jobPrinter{w: a.Stdout, format: format, colour: colour(a.Stdout, a.Getenv)}
			if err := pr.All(job); err != nil {
				return err
			}
			return exitFor(job.Summary.ExitCode())
		},
	}
	outputFlag(cmd, &format)
	return cmd
}
