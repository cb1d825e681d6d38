package cli

import "github.com/spf13/cobra"

func (a *App) certsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "List certificates and requests; sign or reject minions' requests",
	}
	cmd.AddCommand(a.certsListCmd(), a.certsSignCmd(), a.certsRejectCmd())
	return groupCommand(cmd)
}
