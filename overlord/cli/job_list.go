package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/status"
)

func (a *App) jobListCmd() *cobra.Command {
	var (
		format, state string
		limit         int
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List jobs, newest first",
		Example: `  overlord job list
  overlord job list --state RUNNING --limit 5 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := jobs.ListOptions{Limit: limit}
			if state != "" {
				st, err := status.ParseState(state)
				if err != nil {
					return usageError("--state: %v", err)
				}
				opts.State = st
			}
			if limit < 0 {
				return usageError("--limit must not be negative")
			}
			recs, err := a.overlordVia(cmd).Store.ListJobs(opts)
			if err != nil {
				return err
			}
			lines := make([]jobs.Line, len(recs))
			for i, r := range recs {
				lines[i] = r.Line()
			}
			switch format {
			case formatJSON:
				return writeJSON(a.Stdout, lines)
			case formatYAML:
				return writeYAML(a.Stdout, lines)
			case formatNDJSON:
				for _, l := range lines {
					if err := writeJSONLine(a.Stdout, l); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tSTATE\tCREATED\tTARGET\tCALL\tOK\tFAILED\tPENDING")
			for _, l := range lines {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s.%s\t%d\t%d\t%d\n", l.JobID, l.State,
					l.CreatedAt.Local().Format(time.DateTime), l.Target, l.Module, l.Method,
					l.Summary.OK, l.Summary.Failed, l.Summary.Pending)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only jobs in this state: RUNNING, PARTIAL or FINISHED")
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many jobs (0: all)")
	outputFlag(cmd, &format)
	a.directFlag(cmd)
	return cmd
}
