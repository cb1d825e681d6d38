package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *App) caClientCmd() *cobra.Command {
	var bundleOut, keyType string
	cmd := &cobra.Command{
		Use:   "client NAME --bundle-out FILE",
		Short: "Issue one more overlord identity (a second operator, a CI job)",
		Long: `Issue a client certificate with the overlord role and write it, its private
key and the CA certificate as one PEM bundle (mode 0600). Use it with
--identity FILE or OVERLORD_IDENTITY=FILE.

Minions tell identities apart by name, so a name in use by another
identity, whatever its case (this state directory's own included), is
refused until every certificate of that name is revoked (overlord ca
revoke NAME).`,
		Example: `  overlord ca client ci-bot --bundle-out ci-bot.pem
  OVERLORD_IDENTITY=ci-bot.pem overlord call '*' test.ping`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if bundleOut == "" {
				return usageError("--bundle-out FILE is required")
			}
			kt, err := checkKeyType(keyType)
			if err != nil {
				return err
			}
			b, err := a.overlord().IssueClient(args[0], bundleOut, kt)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "overlord identity %q written to %s (0600)\n", b.Cert.Subject.CommonName, bundleOut)
			return nil
		},
	}
	cmd.Flags().StringVar(&bundleOut, "bundle-out", "", "write the bundle here (required)")
	keyTypeFlag(cmd, &keyType)
	return cmd
}
