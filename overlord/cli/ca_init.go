package cli

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/overlord"
)

func (a *App) caInitCmd() *cobra.Command {
	var name, keyType string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the CA, the overlord's identity and overlord.db",
		Long: `Create a certificate authority, the overlord's own client identity and an
empty overlord.db in the state directory. Directories are 0700 and private
keys 0600. An existing CA is never replaced.`,
		Example: `  overlord ca init
  overlord --state-dir /srv/overlord ca init --key-type ed25519`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kt, err := checkKeyType(keyType)
			if err != nil {
				return err
			}
			o := a.overlord()
			ca, err := o.InitCA(name, kt)
			if err != nil {
				return err
			}
			id, err := o.Identity()
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "CA created in %s (fingerprint %s)\n", o.Dir, certs.Fingerprint(ca.Cert))
			fmt.Fprintf(a.Stdout, "overlord identity %q: %s\n", id.Cert.Subject.CommonName, filepath.Join(o.Dir, overlord.CertFile))
			fmt.Fprintf(a.Stdout, "next: overlord minion add NAME --addr HOST:PORT\n")
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name of the overlord identity (default overlord-$USER)")
	keyTypeFlag(cmd, &keyType)
	return cmd
}
