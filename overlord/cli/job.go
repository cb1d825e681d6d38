package cli

import "github.com/spf13/cobra"

func (a *App) jobCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "List, inspect, cancel, reconcile and purge jobs",
	}
	cmd.AddCommand(a.jobListCmd(), a.jobStatusCmd(), a.jobCancelCmd(), a.jobReconcileCmd(), a.jobPurgeCmd(), a.jobDriveCmd())
	return groupCommand(cmd)
}
