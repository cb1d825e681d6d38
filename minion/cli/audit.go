package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/minion"
)

func (a *App) auditCmd() *cobra.Command {
	var (
		limit int
		f     format
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit log: who called what, and how it went",
		Long: `Show the last entries of the minion's audit log (<state-dir>/audit.log):
one line per call with its time, the overlord identity, the gateway it
called through (VIA, "-" for a direct call), its address, the method, the
outcome, the job ID and a SHA-256 digest of the arguments. Requests
refused before their method was read (a gateway naming no identity, or
one it may not call for) show as "refused".`,
		Example: "  minion audit\n  minion audit --limit 200 -o json | jq 'select(.outcome != \"ok\")'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			jsonOut, err := f.isJSON()
			if err != nil {
				return err
			}
			es, err := minion.ReadAudit(a.stateDir, limit)
			if err != nil {
				return err
			}
			if jsonOut {
				for _, e := range es {
					if err := writeJSONLine(a.Stdout, e); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tIDENTITY\tVIA\tREMOTE\tCALL\tOUTCOME\tJOB\tARGS")
			for _, e := range es {
				call := e.Call
				if call == "" || call == "." {
					call = e.RPC
				}
				args := "-"
				if len(e.ArgsSHA256) >= 12 {
					args = e.ArgsSHA256[:12]
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.DateTime), orDash(e.Identity), orDash(e.Via),
					e.Remote, call, e.Outcome, orDash(e.JobID), args)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 50, "the last this many entries (0: all)")
	f.add(cmd) // JSON: one entry per line
	return cmd
}

// orDash returns s, or "-" for an empty s, so that a table's columns
// stay apart.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
