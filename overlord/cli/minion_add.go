package cli

import (
	"fmt"
	"net"

	"github.com/spf13/cobra"
)

func (a *App) minionAddCmd() *cobra.Command {
	var addr, bundleOut, keyType, via string
	cmd := &cobra.Command{
		Use:   "add NAME --addr HOST:PORT [--bundle-out FILE]",
		Short: "Register a minion and issue its certificate",
		Long: `Register a minion in overlord.db at HOST:PORT and issue its server
certificate, which names it. Its certificate, private key and the CA
certificate are written as one PEM bundle (mode 0600) to --bundle-out,
by default NAME.pem in the current directory. Install the bundle on the
minion's host with 'minion init --bundle FILE'.

With --via GW[,GW2...] the minion is reached through those gateways
('overlord gateway add'), the first preferred; HOST:PORT is then its
address as the gateways see it.`,
		Example: `  overlord minion add web1 --addr 10.0.0.11:51234
  overlord minion add db1 --addr db1.example.org:51234 --bundle-out /tmp/db1.pem
  overlord minion add web9 --addr 10.1.0.19:51234 --via gw-eu,gw-eu2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if addr == "" {
				return usageError("--addr HOST:PORT is required")
			}
			if bundleOut == "" {
				bundleOut = name + ".pem"
			}
			kt, err := checkKeyType(keyType)
			if err != nil {
				return err
			}
			gws, err := parseVia(via)
			if err != nil {
				return err
			}
			m, err := a.overlord().AddMinion(name, addr, bundleOut, kt, gws...)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "minion %s registered at %s; bundle written to %s (0600)\n", m.Name, m.Addr, bundleOut)
			_, port, _ := net.SplitHostPort(m.Addr) // checked by AddMinion
			fmt.Fprintf(a.Stdout, "next, on %s: minion init --bundle %s && minion serve --listen :%s\n", m.Name, bundleOut, port)
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "", "the minion's address, HOST:PORT (required)")
	cmd.Flags().StringVar(&bundleOut, "bundle-out", "", "write the minion's bundle here (default NAME.pem)")
	cmd.Flags().StringVar(&via, "via", "", "reach it through these gateways, comma-separated, the first preferred (see 'overlord gateway')")
	keyTypeFlag(cmd, &keyType)
	return cmd
}
