package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/jobs"
)

func (a *App) minionListCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List registered minions",
		Example: "  overlord minion list\n  overlord minion list -o json | jq -r '.[].name'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ms, err := a.overlord().Store.Minions()
			if err != nil {
				return err
			}
			if ms == nil {
				ms = []jobs.Minion{}
			}
			switch format {
			case formatJSON:
				return writeJSON(a.Stdout, ms)
			case formatYAML:
				return writeYAML(a.Stdout, ms)
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tADDRESS\tADDED\tLAST SEEN")
			for _, m := range ms {
				seen := "never"
				if m.LastSeen != nil {
					seen = m.LastSeen.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, m.Addr, m.AddedAt.Local().Format(time.DateTime), seen)
			}
			return tw.Flush()
		},
	}
	outputFlag(cmd, &format, formatText, formatJSON, formatYAML)
	return cmd
}
