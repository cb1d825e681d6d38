package cli

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/overlord"
)

func (a *App) minionListCmd() *cobra.Command {
	var (
		format string
		where  []string
	)
	cmd := &cobra.Command{
		Use:   "list [TARGET]",
		Short: "List registered minions, or those a target matches",
		Long: `List the registered minions. With TARGET (and --where), list only the
minions it matches, without calling them: what 'overlord call TARGET'
would run on. TARGET and --where are read as 'overlord call' reads them
(see 'overlord call --help'), except that the facts of minions that have
none cached are not fetched: such minions are left out by --where and
named on stderr.

Exit status: 0, or 3 when TARGET matches no minion.`,
		Example: `  overlord minion list
  overlord minion list 'web[01-10],!web03'
  overlord minion list @db --where os=debian
  overlord minion list failed:0190e5c2 -o json | jq -r '.[].name'`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: a.completeTargetArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && len(where) > 0 {
				return usageError("--where needs a TARGET ('*' for every minion)")
			}
			o := a.overlord()
			var ms []jobs.Minion
			var err error
			if len(args) == 0 {
				ms, err = o.Store.Minions()
			} else {
				var notes []overlord.Note
				ms, notes, err = o.Select(cmd.Context(), overlord.Selection{Target: args[0], Where: where})
				for _, n := range notes {
					fmt.Fprintf(a.Stderr, "note: %s\n", n)
				}
				if err == nil {
					a.noteUnknownNames(o, args[0])
				}
			}
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
			// A VIA column only when some minion is behind gateways.
			via := slices.ContainsFunc(ms, func(m jobs.Minion) bool { return len(m.Via) > 0 })
			if via {
				fmt.Fprintln(tw, "NAME\tADDRESS\tVIA\tADDED\tLAST SEEN")
			} else {
				fmt.Fprintln(tw, "NAME\tADDRESS\tADDED\tLAST SEEN")
			}
			for _, m := range ms {
				seen := "never"
				if m.LastSeen != nil {
					seen = m.LastSeen.Local().Format(time.DateTime)
				}
				if via {
					gws := "-"
					if len(m.Via) > 0 {
						gws = strings.Join(m.Via, ",")
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Name, m.Addr, gws, m.AddedAt.Local().Format(time.DateTime), seen)
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, m.Addr, m.AddedAt.Local().Format(time.DateTime), seen)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringArrayVar(&where, "where", nil, "only minions whose cached facts match KEY OP VALUE (OP: = != < <= > >= ~); repeatable")
	outputFlag(cmd, &format, formatText, formatJSON, formatYAML)
	return cmd
}
