package cli

import "github.com/spf13/cobra"

func (a *App) jobCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "List jobs and show their status",
	}
	cmd.AddCommand(a.jobListCmd(), a.jobStatusCmd())
	return cmd
}
