// Package cli is the minion's command line: init, enroll and serve.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/internal/buildinfo"
	"github.com/overlordhq/overlord/minion"
	"github.com/overlordhq/overlord/modules"
)

// App holds the IO streams, environment and global flags.
type App struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	stateDir       string
}

// Main runs the minion CLI with args and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := &App{Stdout: stdout, Stderr: stderr, Getenv: os.Getenv}
	root := app.Root()
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 2
	}
	return 0
}

// DefaultStateDir is /var/lib/minion for root, else
// $XDG_STATE_HOME/minion or ~/.local/state/minion.
func DefaultStateDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/minion"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "minion")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "minion")
	}
	return ".minion"
}

// Root returns the root command.
func (a *App) Root() *cobra.Command {
	root := &cobra.Command{
		Use:   "minion",
		Short: "The overlord's minion daemon",
		Long: `minion serves JSON-RPC over HTTPS with mutual TLS and runs module methods
for overlord identities of its CA.`,
		Example: `  minion init --bundle web1.pem
  minion serve --listen :51234`,
		Version:       buildinfo.Version(),
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRun: func(*cobra.Command, []string) {
			if a.stateDir == "" {
				a.stateDir = a.Getenv("MINION_STATE_DIR")
			}
			if a.stateDir == "" {
				a.stateDir = DefaultStateDir()
			}
		},
	}
	root.SetOut(a.Stdout)
	root.SetErr(a.Stderr)
	root.PersistentFlags().StringVar(&a.stateDir, "state-dir", "", "state directory (env MINION_STATE_DIR; default /var/lib/minion for root, else ~/.local/state/minion)")
	root.AddCommand(a.initCmd(), a.enrollCmd(), a.serveCmd(), a.runJobCmd(), a.jobCmd(), a.auditCmd())
	return root
}

func (a *App) initCmd() *cobra.Command {
	var bundle string
	cmd := &cobra.Command{
		Use:   "init --bundle FILE",
		Short: "Install this minion's identity from a bundle",
		Long: `Install the bundle made by 'overlord minion add' (certificate, private key,
CA certificate) into the state directory, with the key at mode 0600, and
print the 'minion serve --listen' that matches the address the minion was
registered at (every interface, that port).`,
		Example: "  minion init --bundle web1.pem",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if bundle == "" {
				return errors.New("--bundle FILE is required")
			}
			b, err := minion.Init(a.stateDir, bundle)
			if err != nil {
				return err
			}
			name := b.Cert.Subject.CommonName
			serve := a.serveCommand()
			// The bundle of 'overlord minion add' says where the overlord
			// reaches the minion (before its PEM blocks).
			data, _ := os.ReadFile(bundle)
			if addr, ok := certs.BundleAddr(data); ok {
				fmt.Fprintf(a.Stdout, "minion %s initialised in %s; the overlord reaches it at %s\nnext: %s --listen %s\n",
					name, a.stateDir, addr, serve, listenFor(addr))
				return nil
			}
			fmt.Fprintf(a.Stdout, "minion %s initialised in %s\nnext: %s --listen :PORT, with the port of the address the minion was registered at ('overlord minion list' shows it; default %s)\n",
				name, a.stateDir, serve, minion.DefaultListen)
			return nil
		},
	}
	cmd.Flags().StringVar(&bundle, "bundle", "", "the bundle file (required)")
	return cmd
}

func (a *App) serveCmd() *cobra.Command {
	var (
		listen    string
		logLevel  string
		grace     time.Duration
		retention time.Duration
		keep      int
	)
	cmd := &cobra.Command{
		Use:   "serve [--listen ADDR]",
		Short: "Serve JSON-RPC over mutual TLS until SIGTERM or SIGINT",
		Long: `Serve JSON-RPC 2.0 at POST /rpc over HTTPS (TLS 1.3), accepting only client
certificates of this minion's CA that carry the overlord role. Async jobs
run detached in runners of their own and outlive a restart of the daemon;
on start it settles the jobs an earlier daemon left running. On SIGTERM
or SIGINT it stops accepting, lets calls in flight finish for --grace,
then exits; a second signal exits at once.`,
		Example: "  minion serve\n  minion serve --listen 127.0.0.1:51234 --log-level debug\n  minion serve --listen 41015          # all addresses, port 41015",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %v", err)
			}
			listen, err := listenAddr(listen)
			if err != nil {
				return err
			}
			logger := slog.New(slog.NewTextHandler(a.Stderr, &slog.HandlerOptions{Level: level}))
			srv, err := minion.New(minion.Config{StateDir: a.stateDir, Listen: listen, Logger: logger, JobRetention: retention, JobKeep: keep})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := srv.Open(ctx); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
			case <-srv.Done():
			}
			stop() // a second signal now ends the process at once
			logger.Info("minion shutting down", "grace", grace)
			sctx, cancel := context.WithTimeout(context.Background(), grace)
			defer cancel()
			return srv.Close(sctx)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", minion.DefaultListen, "address to listen on: HOST:PORT, :PORT or a bare PORT")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().DurationVar(&grace, "grace", 10*time.Second, "how long calls in flight may finish on shutdown")
	cmd.Flags().DurationVar(&retention, "job-retention", minion.DefaultJobRetention, "purge finished async jobs older than this")
	cmd.Flags().IntVar(&keep, "job-keep", minion.DefaultJobKeep, "keep at most this many finished async jobs")
	return cmd
}

// listenAddr reads --listen: HOST:PORT, :PORT, or a bare port number,
// which means every address (":PORT").
func listenAddr(s string) (string, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > 65535 {
			return "", fmt.Errorf("--listen %s: a port is 0 to 65535", s)
		}
		return ":" + s, nil
	}
	if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
		return "", fmt.Errorf("--listen %q: give HOST:PORT, :PORT or a port number (e.g. 127.0.0.1:51234, :51234 or 51234)", s)
	}
	return s, nil
}

// serveCommand is the `minion serve` to run next: with --state-dir when
// the state directory is neither the default nor MINION_STATE_DIR.
func (a *App) serveCommand() string {
	if a.stateDir != DefaultStateDir() && a.Getenv("MINION_STATE_DIR") != a.stateDir {
		return "minion --state-dir " + modules.ShellQuote(a.stateDir) + " serve"
	}
	return "minion serve"
}
