package cli

import "github.com/spf13/cobra"

func (a *App) minionCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "minion",
		Short: "Register, list and remove minions",
	}
	cmd.AddCommand(a.minionAddCmd(), a.minionListCmd(), a.minionRemoveCmd(), a.minionFactsCmd(), a.minionSetCmd())
	return groupCommand(cmd)
}
