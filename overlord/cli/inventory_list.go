package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/internal/termtext"
)

func (a *App) inventoryListCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the inventory's versions, newest first",
		Long: `List the versions of the inventory, newest first: when each was taken,
of which target, how many minions it holds, how many of them were
unreachable, how many changed since the version before, and its size in
overlord.db.`,
		Example: `  overlord inventory list
  overlord inventory list -o json | jq '.[0].version'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			vs, err := a.overlord().InventoryVersions()
			if err != nil {
				return err
			}
			switch format {
			case formatJSON:
				return writeJSON(a.Stdout, vs)
			case formatYAML:
				return writeYAML(a.Stdout, vs)
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tTAKEN\tTARGET\tMINIONS\tUNREACHABLE\tCHANGED\tSIZE")
			for _, v := range vs {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%d\t%s\n", v.Version, v.At.Local().Format(time.DateTime),
					termtext.Line(v.Target), v.Minions, v.Unreachable, v.Changed, bytesText(v.Bytes))
			}
			return tw.Flush()
		},
	}
	outputFlag(cmd, &format, formatText, formatJSON, formatYAML)
	return cmd
}
