package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *App) tokenDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete ID",
		Short:   "Delete a join token, so it enrols no more minions",
		Example: "  overlord token delete 5f0c2a9e4b7d1c38",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.overlord().Store.DeleteToken(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "token %s deleted\n", args[0])
			return nil
		},
	}
}
