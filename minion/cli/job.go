package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/minion"
)

// runJobCmd is the hidden command the daemon starts an async job's runner
// with.
func (a *App) runJobCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "run-job SPOOL-DIR",
		Short:  "Run one spooled async job (started by the daemon)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// The spool directory is <state-dir>/spool/<job>.
			stateDir := filepath.Dir(filepath.Dir(filepath.Clean(args[0])))
			// The daemon says who it is, for the process module to spare
			// it; what the job starts need not know.
			daemon, _ := strconv.Atoi(a.Getenv(minion.MinionPIDEnv))
			os.Unsetenv(minion.MinionPIDEnv)
			return minion.RunJob(args[0], minion.RunnerRegistry(stateDir, daemon))
		},
	}
}

func (a *App) jobCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "Show this minion's async jobs (reads the local spool)",
	}
	var limit int
	var jsonOut bool
	list := &cobra.Command{
		Use:     "list",
		Short:   "List async jobs, newest first",
		Example: "  minion job list\n  minion job list --limit 5 --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			js, err := minion.LocalJobs(a.stateDir, limit)
			if err != nil {
				return err
			}
			if jsonOut {
				if js == nil {
					js = []minion.LocalJob{}
				}
				return writeJSON(a.Stdout, js)
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tSTATE\tOUTCOME\tCREATED\tCALL\tCALLER\tORIGIN JOB")
			for _, j := range js {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s.%s\t%s\t%s\n", j.ID, j.State, outcome(j),
					j.CreatedAt.Local().Format(time.DateTime), j.Module, j.Method, j.Caller, j.OriginJobID)
			}
			return tw.Flush()
		},
	}
	list.Flags().IntVar(&limit, "limit", 50, "at most this many jobs (0: all)")
	list.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	var showJSON bool
	show := &cobra.Command{
		Use:     "show JOB",
		Short:   "Show one async job with its output",
		Example: "  minion job show 019a2b3c-...",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			j, err := minion.ReadLocalJob(a.stateDir, args[0])
			if err != nil {
				return err
			}
			if showJSON {
				return writeJSON(a.Stdout, j)
			}
			fmt.Fprintf(a.Stdout, "job:      %s\nstate:    %s\noutcome:  %s\ncall:     %s.%s\ncaller:   %s\norigin:   %s\ncreated:  %s\n",
				j.ID, j.State, outcome(j), j.Module, j.Method, j.Caller, j.OriginJobID, j.CreatedAt.Local().Format(time.RFC3339))
			if j.FinishedAt != nil {
				fmt.Fprintf(a.Stdout, "finished: %s (%d ms)\n", j.FinishedAt.Local().Format(time.RFC3339), j.DurationMS)
			}
			if j.Error != nil {
				fmt.Fprintf(a.Stdout, "error:    %s: %s\n", j.Error.Kind, j.Error.Message)
			}
			if len(j.Result) > 0 {
				fmt.Fprintf(a.Stdout, "result:   %s\n", j.Result)
			}
			if j.Output != "" {
				fmt.Fprintf(a.Stdout, "output:\n%s", j.Output)
			}
			return nil
		},
	}
	show.Flags().BoolVar(&showJSON, "json", false, "print JSON")
	cmd.AddCommand(list, show)
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("unknown command %q for %q", args[0], c.CommandPath())
		}
		return c.Help()
	}
	return cmd
}

func outcome(j minion.LocalJob) string {
	switch {
	case j.FinishedAt == nil:
		return "-"
	case j.OK:
		return "ok"
	case j.Error != nil:
		return string(j.Error.Kind)
	}
	return "failed"
}

func writeJSON(w interface{ Write([]byte) (int, error) }, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func writeJSONLine(w interface{ Write([]byte) (int, error) }, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
