package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/job"
)

func (a *App) jobPurgeCmd() *cobra.Command {
	var (
		olderThan time.Duration
		keep      int
	)
	cmd := &cobra.Command{
		Use:   "purge --older-than DUR [--keep N]",
		Short: "Delete finished jobs older than DUR",
		Long: fmt.Sprintf(`Delete FINISHED jobs created more than DUR ago, except the N newest jobs.
Running jobs are never purged. Without this, finished jobs older than %s
are purged as new jobs are created.`, job.DefaultRetention),
		Example: "  overlord job purge --older-than 168h\n  overlord job purge --older-than 0s --keep 100",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("older-than") {
				return usageError("--older-than DUR is required (for example 168h)")
			}
			if olderThan < 0 || keep < 0 {
				return usageError("--older-than and --keep must not be negative")
			}
			gone, err := a.overlordVia(cmd).Jobs.Purge(time.Now().Add(-olderThan), keep)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "purged %d job%s\n", len(gone), plural(len(gone)))
			return nil
		},
	}
	cmd.Flags().DurationVar(&olderThan, "older-than", 0, "purge finished jobs created longer ago than this (required)")
	cmd.Flags().IntVar(&keep, "keep", 0, "always keep this many newest jobs")
	a.directFlag(cmd)
	return cmd
}
