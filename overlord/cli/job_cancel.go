package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/status"
)

func (a *App) jobCancelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cancel JOB",
		Short: "Cancel an async job on every minion still running it",
		Long: `Cancel an async job: each minion still running it terminates the job's
whole process group (children included), then kills it after a grace
period, and minions it has not reached yet are skipped. Entries end
FINISHED with error kind cancelled. Follow with 'overlord job status JOB
--wait'.`,
		Example: "  overlord job cancel 019a2b3c\n  overlord job status 019a2b3c --wait",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rec, err := a.overlordVia(cmd).Cancel(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if rec.State == status.Finished {
				fmt.Fprintf(a.Stdout, "job %s already FINISHED\n", rec.ID)
				return nil
			}
			fmt.Fprintf(a.Stdout, "cancel requested for job %s\n", rec.ID)
			return nil
		},
	}
	a.directFlag(cmd)
	return cmd
}
