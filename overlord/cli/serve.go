package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/enrolment"
	"github.com/overlordhq/overlord/overlord"
)

func (a *App) serveCmd() *cobra.Command {
	var (
		listen, name, logLevel string
		grace                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve [--listen ADDR]",
		Short: "Serve the enrolment endpoint until SIGTERM or SIGINT",
		Long: `Serve the enrolment endpoint over HTTPS (TLS 1.3): minions send certificate
signing requests to it with 'minion enroll'. A request with a valid join
token ('overlord token create') is signed at once and the minion
registered; one without waits for 'overlord certs sign' or 'certs reject'.

The endpoint's certificate is issued by the CA when it starts, with the
endpoint role, and kept in memory only; minions verify it by the CA's
fingerprint, which is logged at start. overlord.db is opened for each
request and closed again, so other overlord commands run alongside.

On SIGTERM or SIGINT it stops accepting, lets requests in flight finish
for --grace, then exits 0; a second signal exits at once.`,
		Example: `  overlord serve
  overlord serve --listen 10.0.0.1:51235 --log-level debug`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return usageError("--log-level: %v", err)
			}
			logger := slog.New(slog.NewTextHandler(a.Stderr, &slog.HandlerOptions{Level: level}))
			o := overlord.New(a.stateDir, a.identityFile, a.lockTimeout, logger)
			ep, err := o.NewEndpoint(overlord.EndpointConfig{Listen: listen, Name: name})
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if err := ep.Open(ctx); err != nil {
				return err
			}
			fmt.Fprintf(a.Stderr, "enrolment endpoint at %s; CA fingerprint %s\n", ep.Addr(), ep.CAFingerprint())
			select {
			case <-ctx.Done():
			case <-ep.Done():
			}
			// A second signal cuts the grace period short.
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sig)
			sctx, cancel := context.WithTimeout(context.Background(), grace)
			defer cancel()
			go func() {
				select {
				case <-sig:
					cancel()
				case <-sctx.Done():
				}
			}()
			logger.Info("enrolment endpoint shutting down", "grace", grace)
			return ep.Close(sctx)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", fmt.Sprintf(":%d", enrolment.DefaultPort), "address to listen on")
	cmd.Flags().StringVar(&name, "name", "", "name in the endpoint's certificate (default: the host name)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().DurationVar(&grace, "grace", 10*time.Second, "how long requests in flight may finish on shutdown")
	return cmd
}
