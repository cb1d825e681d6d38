package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/overlord"
)

func (a *App) caRevokeCmd() *cobra.Command {
	var role, certFile string
	cmd := &cobra.Command{
		Use:   "revoke NAME [--role minion|overlord] | --cert FILE",
		Short: "Revoke a minion's or an overlord identity's certificates",
		Long: `Revoke every certificate recorded for NAME (or only the one in --cert FILE,
a certificate or a bundle) and sign a new revocation list (CRL) with a
higher number.

A revoked minion is dropped from the registry and from its groups, and
its certificate is refused by this overlord. A revoked overlord identity
is refused by every minion from its next contact with this overlord on:
every call hands the new list to a minion whose answer shows an older
one, and the minion keeps it in its state directory.

The identity this command runs as cannot be revoked by itself; use
--identity with another.`,
		Example: `  overlord ca revoke ci-bot
  overlord ca revoke web3 --role minion
  overlord ca revoke --cert old-laptop.pem`,
		Args: cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := overlord.RevokeSpec{Role: certs.Role(role), CertFile: certFile}
			if len(args) == 1 {
				spec.Name = args[0]
			}
			if spec.Name == "" && certFile == "" {
				return usageError("give NAME or --cert FILE")
			}
			switch spec.Role {
			case "", certs.RoleMinion, certs.RoleOverlord:
			default:
				return usageError("unknown --role %q (want minion or overlord)", role)
			}
			r, err := a.overlord().Revoke(spec, time.Now())
			if err != nil {
				return err
			}
			for _, c := range r.Certs {
				fmt.Fprintf(a.Stdout, "revoked %s certificate %q (serial %s)", c.Role, c.Name, c.Serial)
				if c.Role == string(certs.RoleMinion) {
					fmt.Fprint(a.Stdout, "; dropped from the registry")
				}
				fmt.Fprintln(a.Stdout)
			}
			fmt.Fprintf(a.Stdout, "revocation list %d signed; minions get it at their next call\n", r.CRLNumber)
			return nil
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "only certificates of this role: minion or overlord")
	cmd.Flags().StringVar(&certFile, "cert", "", "revoke the certificate in this file (a certificate or a bundle)")
	_ = cmd.RegisterFlagCompletionFunc("role", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{string(certs.RoleMinion), string(certs.RoleOverlord)}, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}
