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

	"github.com/overlordhq/overlord/internal/termtext"
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
	var listFmt format
	list := &cobra.Command{
		Use:     "list",
		Short:   "List async jobs, newest first",
		Example: "  minion job list\n  minion job list --limit 5 -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			jsonOut, err := listFmt.isJSON()
			if err != nil {
				return err
			}
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
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s.%s\t%s\t%s\n", j.ID, j.State, termtext.Line(outcome(j)),
					j.CreatedAt.Local().Format(time.DateTime), termtext.Line(j.Module), termtext.Line(j.Method), termtext.Line(j.Caller), termtext.Line(j.OriginJobID))
			}
			return tw.Flush()
		},
	}
	list.Flags().IntVar(&limit, "limit", 50, "at most this many jobs (0: all)")
	listFmt.add(list)
	var showFmt format
	show := &cobra.Command{
		Use:     "show JOB",
		Short:   "Show one async job with its output",
		Example: "  minion job show 019a2b3c-...\n  minion job show 019a2b3c-... -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			jsonOut, err := showFmt.isJSON()
			if err != nil {
				return err
			}
			j, err := minion.ReadLocalJob(a.stateDir, args[0])
			if err != nil {
				return err
			}
			if jsonOut {
				return writeJSON(a.Stdout, j)
			}
			fmt.Fprintf(a.Stdout, "job:      %s\nstate:    %s\noutcome:  %s\ncall:     %s.%s\ncaller:   %s\norigin:   %s\ncreated:  %s\n",
				j.ID, j.State, termtext.Line(outcome(j)), termtext.Line(j.Module), termtext.Line(j.Method), termtext.Line(j.Caller), termtext.Line(j.OriginJobID), j.CreatedAt.Local().Format(time.RFC3339))
			if j.FinishedAt != nil {
				fmt.Fprintf(a.Stdout, "finished: %s (%d ms)\n", j.FinishedAt.Local().Format(time.RFC3339), j.DurationMS)
			}
			if j.Error != nil {
				fmt.Fprintf(a.Stdout, "error:    %s: %s\n", j.Error.Kind, termtext.Line(j.Error.Message))
			}
			if len(j.Result) > 0 {
				fmt.Fprintf(a.Stdout, "result:   %s\n", termtext.Line(string(j.Result)))
			}
			if j.Output != "" {
				// The job's output as text, its control characters shown
				// (as the overlord shows them); -o json has the bytes.
				fmt.Fprintf(a.Stdout, "output:\n%s", termtext.Visible(j.Output))
			}
			return nil
		},
	}
	showFmt.add(show)
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

// format is the output format flags of a minion command: -o text|json,
// as the overlord has them, and --json, the same as -o json.
type format struct {
	json   bool
	output string
}

func (f *format) add(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "output format: text or json")
	cmd.Flags().BoolVar(&f.json, "json", false, "the same as -o json")
}

// isJSON reports whether JSON was asked for, or why the flags are wrong.
func (f *format) isJSON() (bool, error) {
	switch f.output {
	case "text":
		return f.json, nil
	case "json":
		return true, nil
	}
	return false, fmt.Errorf("-o %q: want text or json", f.output)
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
