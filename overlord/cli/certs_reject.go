package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func (a *App) certsRejectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reject NAME",
		Short: "Reject a minion's pending certificate request",
		Long: `Reject the pending certificate request of minion NAME. The minion is told
at its next poll and 'minion enroll' fails; that key is never signed. A
new request for the name, from another key, may follow.`,
		Example: "  overlord certs reject web4",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := a.overlord().RejectRequest(args[0], time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "rejected the request of %s (key %.16s…)\n", r.Name, r.KeyFingerprint)
			return nil
		},
	}
}
