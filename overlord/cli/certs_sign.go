package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func (a *App) certsSignCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "sign NAME",
		Short: "Sign a minion's pending certificate request and register it",
		Long: `Sign the pending certificate request of minion NAME: the CA issues it a
minion certificate for the request's key (whatever else the request asked
for), and the minion is registered at the address it gave. A minion
waiting with 'minion enroll --wait' picks the certificate up at its next
poll. Compare the request's key fingerprint ('overlord certs list') with
the one the minion printed before signing.`,
		Example: "  overlord certs sign web4",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := a.overlord().SignRequest(args[0], time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "signed %s (serial %s, key %.16s…); registered at %s\n", r.Name, r.Serial, r.KeyFingerprint, r.Addr)
			return nil
		},
	}
}
