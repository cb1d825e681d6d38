package cli

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/internal/termtext"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

// factColumns are the facts `minion facts` shows in text.
var factColumns = []string{"os", "os_version", "kernel", "arch", "cpus", "memory_bytes"}

func (a *App) minionFactsCmd() *cobra.Command {
	var (
		format string
		spec   overlord.CallSpec
	)
	cmd := &cobra.Command{
		Use:   "facts TARGET",
		Short: "Refresh and show the facts of minions (for --where)",
		Long: `Call facts.all on every minion TARGET matches and keep the facts in
overlord.db, where 'overlord call --where' reads them. Any facts.all call
refreshes them the same way. The call is recorded as a job.`,
		Example: `  overlord minion facts '*'
  overlord call --where os=debian --where 'memory_bytes>=8e9' '*' test.ping`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if spec.Forks < 1 || spec.Timeout <= 0 {
				return usageError("--forks must be at least 1 and --timeout positive")
			}
			spec.Target, spec.Module, spec.Method = args[0], "facts", "all"
			o := a.overlord()
			p, err := o.Prepare(spec)
			if err != nil {
				return err
			}
			job, err := o.Call(cmd.Context(), p, nil)
			if job.JobID == "" {
				return err
			}
			if format != formatText {
				pr := &jobPrinter{w: a.Stdout, format: format, jobID: job.JobID}
				if err := pr.All(job); err != nil {
					return err
				}
				return exitFor(job.Summary.ExitCode())
			}
			inv, err := o.Store.Inventory()
			if err != nil {
				return err
			}
			names := make([]string, 0, len(job.Minions))
			for n := range job.Minions {
				names = append(names, n)
			}
			sort.Strings(names)
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "NAME\t%s\n", strings.ToUpper(strings.Join(factColumns, "\t")))
			for _, n := range names {
				r := job.Minions[n]
				row := []string{n}
				if !r.OK {
					// A dash in every column keeps the columns aligned
					// (tabwriter aligns a column only over consecutive
					// lines that have it); the error trails the row.
					e := r.Error
					if e == nil {
						e = &status.Error{Kind: status.KindInternal}
					}
					for range factColumns {
						row = append(row, "-")
					}
					row = append(row, termtext.Line(fmt.Sprintf("ERROR %s: %s", e.Kind, oneLine(e.Message))))
					fmt.Fprintln(tw, strings.Join(row, "\t"))
					continue
				}
				for _, m := range inv.Minions {
					if m.Name == n {
						for _, c := range factColumns {
							// Facts are what the minion said: show
							// them, do not let them drive the terminal.
							row = append(row, termtext.Line(fmt.Sprint(orDash(m.Facts[c]))))
						}
					}
				}
				fmt.Fprintln(tw, strings.Join(row, "\t"))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return exitFor(job.Summary.ExitCode())
		},
	}
	cmd.Flags().IntVar(&spec.Forks, "forks", fanout.DefaultForks, "at most this many calls at once")
	cmd.Flags().DurationVar(&spec.Timeout, "timeout", overlord.DefaultCallTimeout, "time limit of each minion's call")
	outputFlag(cmd, &format)
	return cmd
}

func orDash(v any) any {
	if v == nil {
		return "-"
	}
	if f, ok := v.(float64); ok {
		return fmt.Sprintf("%.0f", f)
	}
	return v
}
