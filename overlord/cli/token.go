package cli

import "github.com/spf13/cobra"

func (a *App) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and delete join tokens for online enrolment",
	}
	cmd.AddCommand(a.tokenCreateCmd(), a.tokenListCmd(), a.tokenDeleteCmd())
	return groupCommand(cmd)
}
