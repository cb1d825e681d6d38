package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *App) minionRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "remove NAME",
		Short:   "Unregister a minion (and drop it from every group)",
		Example: "  overlord minion remove web3",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.overlord().Store.RemoveMinion(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "minion %s removed\n", args[0])
			return nil
		},
	}
}
