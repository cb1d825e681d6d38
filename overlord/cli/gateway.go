package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/jobs"
)

func (a *App) gatewayCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Register gateways: overlord services that reach minions for this one",
		Long: `A gateway is 'overlord serve' on another machine, close to minions this
overlord cannot reach, or too many for one machine to keep connections to.
Minions added with --via GW are called through their gateway: it keeps
the warm connections to them and streams their results back. See
docs/gateways.md.

Set one up in three steps:
  here:         overlord gateway add gw1 --addr gw1.example.org:51235 --bundle-out gw1.pem
  on gw1:       overlord gateway init --bundle gw1.pem && overlord serve
  here:         overlord minion add web1 --addr 10.1.0.11:51234 --via gw1`,
	}
	cmd.AddCommand(a.gatewayAddCmd(), a.gatewayInitCmd(), a.gatewayListCmd(), a.gatewayRemoveCmd())
	return cmd
}

func (a *App) gatewayAddCmd() *cobra.Command {
	var addr, bundleOut, keyType string
	cmd := &cobra.Command{
		Use:   "add NAME --addr HOST:PORT [--bundle-out FILE]",
		Short: "Register a gateway and issue its certificate",
		Long: `Register a gateway in overlord.db at HOST:PORT (where its 'overlord
serve' listens, 51235 by default) and issue its certificate, of the
gateway role, from this overlord's CA. Its certificate, private key and
the CA certificate are written as one PEM bundle (mode 0600) to
--bundle-out, by default NAME.pem. Install it on the gateway's machine
with 'overlord gateway init --bundle FILE'.`,
		Example: `  overlord gateway add gw-eu --addr 10.2.0.1:51235
  overlord gateway add gw-us --addr gw-us.example.org:51235 --bundle-out /tmp/gw-us.pem`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if addr == "" {
				return usageError("--addr HOST:PORT is required: where the gateway's 'overlord serve' listens")
			}
			if bundleOut == "" {
				bundleOut = name + ".pem"
			}
			kt, err := checkKeyType(keyType)
			if err != nil {
				return err
			}
			g, err := a.overlord().AddGateway(name, addr, bundleOut, kt)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "gateway %s registered at %s; bundle written to %s (0600)\n", g.Name, g.Addr, bundleOut)
			fmt.Fprintf(a.Stdout, "next, on %s: overlord gateway init --bundle %s && overlord serve --listen %s\n", g.Name, bundleOut, g.Addr)
			fmt.Fprintf(a.Stdout, "then: overlord minion add NAME --addr HOST:PORT --via %s\n", g.Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "", "the gateway's address, HOST:PORT (required)")
	cmd.Flags().StringVar(&bundleOut, "bundle-out", "", "write the gateway's bundle here (default NAME.pem)")
	keyTypeFlag(cmd, &keyType)
	return cmd
}

func (a *App) gatewayInitCmd() *cobra.Command {
	var bundle string
	cmd := &cobra.Command{
		Use:   "init --bundle FILE",
		Short: "Install a gateway's bundle in this machine's state directory",
		Long: `Install the bundle 'overlord gateway add' wrote in the state directory
(--state-dir) of the gateway's machine. 'overlord serve' there then runs
as the gateway: it listens (--listen, :51235) for calls from the
overlord, over mutual TLS, and makes them to the minions behind it on its
warm pool, on behalf of the overlord identity that sent each one. The
directory must hold no CA and no other identity.`,
		Example: `  overlord gateway init --bundle gw-eu.pem && overlord serve
  overlord --state-dir /var/lib/overlord gateway init --bundle /tmp/gw-eu.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if bundle == "" {
				return usageError("--bundle FILE is required (made by 'overlord gateway add')")
			}
			if err := certs.CheckKeyFile(bundle); err != nil {
				return err
			}
			b, err := certs.ReadBundle(bundle)
			if err != nil {
				return err
			}
			o := a.overlord()
			if err := o.InitGateway(b); err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "gateway %s installed in %s; run 'overlord serve' there\n", b.Cert.Subject.CommonName, o.Dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&bundle, "bundle", "", "the bundle from 'overlord gateway add' (required)")
	return cmd
}

func (a *App) gatewayListCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List registered gateways and how many minions each reaches",
		Example: `  overlord gateway list
  overlord gateway list -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inv, err := a.overlord().Store.Inventory()
			if err != nil {
				return err
			}
			type row struct {
				jobs.Gateway
				Minions   int `json:"minions"`   // minions it reaches
				Preferred int `json:"preferred"` // of which it is the first gateway
			}
			rows := make([]row, 0, len(inv.Gateways))
			idx := map[string]int{}
			for i, g := range inv.Gateways {
				rows = append(rows, row{Gateway: g})
				idx[g.Name] = i
			}
			for _, m := range inv.Minions {
				for j, n := range m.Via {
					if i, ok := idx[n]; ok {
						rows[i].Minions++
						if j == 0 {
							rows[i].Preferred++
						}
					}
				}
			}
			switch format {
			case formatJSON:
				return writeJSON(a.Stdout, rows)
			case formatYAML:
				return writeYAML(a.Stdout, rows)
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tADDRESS\tMINIONS\tFIRST FOR\tADDED")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", r.Name, r.Addr, r.Minions, r.Preferred, r.AddedAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	outputFlag(cmd, &format, formatText, formatJSON, formatYAML)
	return cmd
}

func (a *App) gatewayRemoveCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "remove NAME",
		Short: "Unregister a gateway",
		Long: `Unregister a gateway: minions it reaches keep their other gateways. A
minion it is the only gateway of would be called directly, which it may
not be reachable by: that is refused unless --force. Revoke its
certificate too ('overlord ca revoke NAME') if the machine is gone.`,
		Example: `  overlord gateway remove gw-eu
  overlord gateway remove gw-eu --force`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.overlord().Store.RemoveGateway(args[0], force); err != nil {
				if strings.Contains(err.Error(), jobs.ErrInUse.Error()) {
					return fmt.Errorf("%w; move them first ('overlord minion set NAME --via OTHER') or use --force", err)
				}
				return err
			}
			fmt.Fprintf(a.Stdout, "gateway %s removed\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove it even if it is the only gateway of some minions")
	return cmd
}
