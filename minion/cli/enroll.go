package cli

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/enrolment"
	"github.com/overlordhq/overlord/minion"
)

func (a *App) enrollCmd() *cobra.Command {
	var (
		cfg     minion.EnrolConfig
		keyType string
	)
	cmd := &cobra.Command{
		Use:     "enroll --server ADDR --name NAME --addr HOST:PORT [--token T | --ca-fingerprint FP] [--wait]",
		Aliases: []string{"enrol"},
		Short:   "Get this minion's certificate from the overlord's enrolment endpoint",
		Long: `Make this minion's private key here (it never leaves the host), send a
certificate signing request to the overlord's enrolment endpoint
('overlord serve'), and install the certificate it signs, with the key and
the CA certificate, in the state directory as 'minion init' would. Then
'minion serve' works.

With --token (from 'overlord token create'; or MINION_JOIN_TOKEN, which
other users cannot see in the process list) the request is signed at once
and the minion registered at --addr. Without one it waits for an
operator: 'overlord certs sign NAME'. Without --wait the command then
exits 0 saying the request is pending; run it again (or with --wait) to
pick up the certificate. The key is kept in enrol.key (0600) meanwhile.

The endpoint is verified by the CA's fingerprint before anything is sent:
the token carries it; without a token give --ca-fingerprint (printed by
'overlord ca init', 'overlord serve' and 'overlord token create'). With
neither, nothing is sent: the command fails and prints the fingerprint the
endpoint presents, for you to compare.`,
		Example: `  minion enroll --server overlord.example.org:51235 --name web4 --addr 10.0.0.14:51234 --token ovl1.…
  minion enroll --server 10.0.0.1 --name web5 --addr 10.0.0.15:51234 --ca-fingerprint 2b0a5d… --wait`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Server == "" || cfg.Name == "" || cfg.Addr == "" {
				return errors.New("--server, --name and --addr are required")
			}
			kt := certs.KeyType(keyType)
			if kt != certs.ECDSA && kt != certs.Ed25519 {
				return fmt.Errorf("unknown --key-type %q (want ecdsa or ed25519)", keyType)
			}
			cfg.KeyType = kt
			if cfg.Token == "" {
				cfg.Token = a.Getenv("MINION_JOIN_TOKEN")
			}
			cfg.StateDir = a.stateDir
			cfg.Logf = func(format string, args ...any) { fmt.Fprintf(a.Stderr, format+"\n", args...) }
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := minion.Enrol(ctx, cfg)
			switch {
			case errors.Is(err, minion.ErrPending):
				fmt.Fprintf(a.Stdout, "certificate request for %s pending (key fingerprint %s)\n", res.Name, res.KeyFingerprint)
				fmt.Fprintf(a.Stdout, "next, on the overlord: overlord certs sign %s; then run this command again, or with --wait\n", res.Name)
				return nil
			case err != nil && ctx.Err() != nil:
				return fmt.Errorf("interrupted; run the command again to go on with the same key (%s)", minion.EnrolKeyFile)
			case err != nil:
				var refusal *enrolment.Error
				if errors.As(err, &refusal) {
					err = fmt.Errorf("enrolment refused (%s): %s", refusal.Kind, refusal.Message)
					if refusal.Kind == enrolment.KindRejected || refusal.Kind == enrolment.KindRevoked {
						err = fmt.Errorf("%w (to ask again with a new key, remove %s)", err, filepath.Join(a.stateDir, minion.EnrolKeyFile))
					}
				}
				return err
			}
			fmt.Fprintf(a.Stdout, "minion %s enrolled: certificate installed in %s (CA %s)\nnext: %s --listen %s\n",
				res.Name, a.stateDir, res.CAFingerprint, a.serveCommand(), listenFor(cfg.Addr))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Server, "server", "", fmt.Sprintf("the enrolment endpoint, HOST[:PORT] (port %d by default; required)", enrolment.DefaultPort))
	f.StringVar(&cfg.Name, "name", "", "this minion's name (required)")
	f.StringVar(&cfg.Addr, "addr", "", "HOST:PORT where the overlord will reach this minion (required)")
	f.StringVar(&cfg.Token, "token", "", "a join token from 'overlord token create': signed at once (env MINION_JOIN_TOKEN)")
	f.StringVar(&cfg.CAFingerprint, "ca-fingerprint", "", "the CA's SHA-256 fingerprint, to verify the endpoint without a token")
	f.BoolVar(&cfg.Wait, "wait", false, "wait until an operator signs or rejects the request")
	f.DurationVar(&cfg.PollInterval, "poll-interval", minion.DefaultPollInterval, "with --wait, how often to ask")
	f.StringVar(&keyType, "key-type", string(certs.ECDSA), "key type: ecdsa (P-256) or ed25519")
	return cmd
}

// listenFor suggests a --listen address for a minion the overlord reaches
// at addr: every interface, addr's port.
func listenFor(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[i:]
		}
	}
	return addr
}
