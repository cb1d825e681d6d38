package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
	"github.com/overlordhq/overlord/ui"
)

func (a *App) uiCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "The web dashboard of 'overlord serve --ui'",
		Long: `The web dashboard that 'overlord serve --ui ADDR' serves: the fleet, the
jobs, each job's output live, a form to start a call. See docs/ui.md.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(a.uiURLCmd())
	return cmd
}

func (a *App) uiURLCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "url",
		Short: "Print the dashboard's login URL",
		Long: `Print the login URL of the dashboard the running service serves
(overlord serve --ui ADDR), as the service printed it when it started.
The URL carries the service's login token: opening it logs the browser in
for 12 hours. The token changes each time the service starts.

It asks the service over its local socket, which only the state
directory's owner may use. With no service running, or one started
without --ui, it says so and exits 1.`,
		Example: `  overlord ui url
  xdg-open "$(overlord ui url)"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := a.overlord()
			url, err := o.ServiceUI(cmd.Context())
			if err != nil {
				return &ExitError{Code: status.ExitFailed, Err: err}
			}
			_, err = fmt.Fprintln(a.Stdout, url)
			return err
		},
	}
}

// uiFlags are serve's flags for the dashboard.
type uiFlags struct {
	addr          string // --ui
	tls           bool   // --ui-tls
	cert, keyFile string // --ui-cert, --ui-key
}

func (f *uiFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "ui", "", "serve the web dashboard at this address (plain HTTP on a loopback address, such as 127.0.0.1:8080)")
	fl.BoolVar(&f.tls, "ui-tls", false, "serve the dashboard over HTTPS with a certificate the CA issues for --name (needed for an address that is not loopback)")
	fl.StringVar(&f.cert, "ui-cert", "", "serve the dashboard over HTTPS with this certificate (PEM; with --ui-key) instead of one of the CA")
	fl.StringVar(&f.keyFile, "ui-key", "", "the private key of --ui-cert (PEM)")
}

// check refuses flags that do not go together, before anything starts.
func (f *uiFlags) check() error {
	withTLS := f.tls || f.cert != ""
	switch {
	case f.addr == "" && (f.tls || f.cert != "" || f.keyFile != ""):
		return usageError("--ui-tls, --ui-cert and --ui-key are for the dashboard: give its address with --ui ADDR")
	case (f.cert == "") != (f.keyFile == ""):
		return usageError("--ui-cert and --ui-key go together")
	case f.tls && f.cert != "":
		return usageError("--ui-tls makes a certificate of the CA; --ui-cert brings one: give one of them")
	case f.addr == "":
		return nil
	}
	if err := ui.CheckAddr(f.addr, withTLS); err != nil {
		return usageError("--ui: %v (--ui-tls)", err)
	}
	return nil
}

// tlsConfig returns the dashboard's TLS configuration, or nil for plain
// HTTP, and the host name its URL should carry ("" for --ui's host).
func (f *uiFlags) tlsConfig(o *overlord.Overlord, name string) (*tls.Config, string, error) {
	switch {
	case f.cert != "":
		pair, err := tls.LoadX509KeyPair(f.cert, f.keyFile)
		if err != nil {
			return nil, "", fmt.Errorf("--ui-cert, --ui-key: %w", err)
		}
		return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}, "", nil
	case f.tls:
		ca, err := o.Authority()
		if err != nil {
			return nil, "", fmt.Errorf("--ui-tls needs the CA's key to issue the dashboard's certificate: %w", err)
		}
		if name == "" {
			name = "overlord-endpoint"
			if h, err := os.Hostname(); err == nil && certs.CheckName(h) == nil {
				name = h
			}
		}
		kt := certs.ECDSA
		if _, ok := ca.Key.(ed25519.PrivateKey); ok {
			kt = certs.Ed25519
		}
		cert, key, err := ca.Issue(name, certs.RoleEndpoint, kt)
		if err != nil {
			return nil, "", fmt.Errorf("--ui-tls: %w", err)
		}
		return &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw, ca.Cert.Raw}, PrivateKey: key, Leaf: cert}},
		}, name, nil
	}
	return nil, "", nil
}

// openUI serves the dashboard with api as its API, tells the service its
// login URL, and prints and logs it. It returns nil without --ui.
func (a *App) openUI(ctx context.Context, f *uiFlags, o *overlord.Overlord, svc *overlord.Service, name string, api, metrics http.Handler, logger *slog.Logger) (*ui.UI, error) {
	if f.addr == "" {
		return nil, nil
	}
	tcfg, host, err := f.tlsConfig(o, name)
	if err != nil {
		return nil, err
	}
	u := ui.New(ui.Config{API: api, Metrics: metrics, Logger: logger, Secure: tcfg != nil})
	if err := u.Open(ctx, ui.ServeConfig{Addr: f.addr, TLS: tcfg, Name: host}); err != nil {
		return nil, err
	}
	login := u.LoginURL(u.URL())
	svc.SetUI(login)
	fmt.Fprintf(a.Stderr, "dashboard at %s; log in with %s\n", u.URL(), login)
	logger.Info("dashboard login URL", "url", login)
	return u, nil
}
