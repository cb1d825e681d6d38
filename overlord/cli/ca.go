package cli

import (
	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/certs"
)

func (a *App) caCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Manage the certificate authority, overlord identities and revocation",
	}
	cmd.AddCommand(a.caInitCmd(), a.caClientCmd(), a.caRevokeCmd())
	return groupCommand(cmd)
}

// keyTypeFlag adds --key-type to cmd.
func keyTypeFlag(cmd *cobra.Command, dst *string) {
	cmd.Flags().StringVar(dst, "key-type", string(certs.ECDSA), "key type: ecdsa (P-256) or ed25519")
	_ = cmd.RegisterFlagCompletionFunc("key-type", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{string(certs.ECDSA), string(certs.Ed25519)}, cobra.ShellCompDirectiveNoFileComp
	})
}

func checkKeyType(s string) (certs.KeyType, error) {
	switch kt := certs.KeyType(s); kt {
	case certs.ECDSA, certs.Ed25519:
		return kt, nil
	}
	return "", usageError("unknown --key-type %q (want ecdsa or ed25519)", s)
}
