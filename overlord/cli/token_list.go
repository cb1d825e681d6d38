package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func (a *App) tokenListCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List join tokens (never their secrets)",
		Example: "  overlord token list\n  overlord token list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ts, err := a.overlord().Store.Tokens()
			if err != nil {
				return err
			}
			now := time.Now()
			out := make([]tokenJSON, len(ts))
			for i, t := range ts {
				out[i] = tokenJSON{ID: t.ID, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, Uses: t.Uses, Used: t.Used, State: t.State(now)}
			}
			if format == formatJSON {
				return writeJSON(a.Stdout, out)
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tUSED\tCREATED\tEXPIRES")
			for _, t := range out {
				fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\n", t.ID, t.State, t.Used, t.Uses,
					t.CreatedAt.Local().Format(time.DateTime), t.ExpiresAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	outputFlag(cmd, &format, formatText, formatJSON)
	return cmd
}
