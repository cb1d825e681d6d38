package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func (a *App) certsListCmd() *cobra.Command {
	var format, state string
	cmd := &cobra.Command{
		Use:   "list [--state STATE]",
		Short: "List certificates (signed, revoked) and minions' requests (pending, rejected)",
		Long: `List every certificate the CA issued, signed or revoked, and every minion's
certificate request that has none yet: pending (waiting for 'overlord
certs sign' or 'certs reject') or rejected. KEY is the start of the
SHA-256 of the public key: 'minion enroll' prints the same for its
request, so compare them before signing.`,
		Example: "  overlord certs list\n  overlord certs list --state pending -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch state {
			case "", "pending", "signed", "rejected", "revoked":
			default:
				return usageError("unknown --state %q (want pending, signed, rejected or revoked)", state)
			}
			all, err := a.overlord().Certs()
			if err != nil {
				return err
			}
			out := all[:0]
			for _, e := range all {
				if state == "" || e.State == state {
					out = append(out, e)
				}
			}
			switch format {
			case formatJSON:
				return writeJSON(a.Stdout, out)
			case formatYAML:
				return writeYAML(a.Stdout, out)
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tSTATE\tKEY\tADDRESS\tSOURCE\tSINCE")
			for _, e := range out {
				var since *time.Time
				switch e.State {
				case "pending":
					since = e.RequestedAt
				case "rejected":
					since = e.RejectedAt
				case "revoked":
					since = e.RevokedAt
				default:
					since = e.IssuedAt
				}
				when := "-"
				if since != nil {
					when = since.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.16s\t%s\t%s\t%s\n", e.Name, e.Role, e.State, e.KeyFingerprint,
					dash(e.Addr), dash(e.Source), when)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only this state: pending, signed, rejected or revoked")
	_ = cmd.RegisterFlagCompletionFunc("state", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"pending", "signed", "rejected", "revoked"}, cobra.ShellCompDirectiveNoFileComp
	})
	outputFlag(cmd, &format, formatText, formatJSON, formatYAML)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
