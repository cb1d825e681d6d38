package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/api"
	"github.com/overlordhq/overlord/enrolment"
	"github.com/overlordhq/overlord/job"
	"github.com/overlordhq/overlord/overlord"
)

func (a *App) serveCmd() *cobra.Command {
	var (
		listen, name, logLevel string
		grace, window          time.Duration
		noEnrol                bool
		invEvery               time.Duration
		invKeep                int
		leaseTTL               time.Duration
		uiF                    uiFlags
	)
	cmd := &cobra.Command{
		Use:   "serve [--listen ADDR]",
		Short: "Run the overlord service: warm connections, job drivers, enrolment",
		Long: `Run the overlord's long-lived service until SIGTERM or SIGINT. It is
optional: every command works without it; when it runs, they go through it.

The service listens on a local socket, <state-dir>/overlord.sock (mode
0600; connections from any user but the state directory's owner are
refused). call, script, cp, fetch, inventory snapshot and job status,
list, cancel and purge find it there and send their calls through it: it keeps its mutually
authenticated connections to each minion it has called open (keep-alive),
reused by every call and job, so a call skips the TLS handshakes. Output,
JSON, exit codes and job records are the same either way; --direct on
those commands skips the service, and -v says which way a command went.
Run it as the state directory's owner.

It also drives every async job: 'call --async' records the job and hands
it to the service instead of starting a driver process. On start, and
every 10 s, it adopts every open job whose driver is gone (a job submitted
while it was down whose driver died, or one it drove before it was
killed): nothing runs twice. Every minute it asks minions for the late
results of entries that ended unreachable or timeout in jobs finished
within --reconcile-window (see 'overlord job reconcile'). With
--inventory-every it takes an inventory snapshot of every minion that
often, keeping the newest --inventory-keep versions (see 'overlord
inventory'). Its Prometheus metrics are at GET /metrics on the socket
(docs/metrics.md).

And it serves the enrolment endpoint over HTTPS (TLS 1.3): minions send certificate
signing requests to it with 'minion enroll'. A request with a valid join
token ('overlord token create') is signed at once and the minion
registered; one without waits for 'overlord certs sign' or 'certs reject'.

The same HTTPS listener serves the HTTP API under /v1/ (jobs, minions,
groups, a job's events as they happen; docs/api.md) to clients with a
certificate of the overlord role from 'overlord ca client NAME'; every
call is logged with its caller, and jobs record who submitted them.

The endpoint's certificate is issued by the CA when it starts, with the
endpoint role, and kept in memory only; minions verify it by the CA's
fingerprint, which is logged at start. overlord.db is opened for each
request and closed again, so other overlord commands run alongside.

With --ui ADDR it also serves the web dashboard there (docs/ui.md): plain
HTTP on a loopback address only; any other address needs --ui-tls (a
certificate the CA issues for --name) or --ui-cert and --ui-key. It prints
the login URL, which carries a token made at start; 'overlord ui url'
prints it again. GET /metrics on that address needs no login.

In a gateway's state directory ('overlord gateway init') it runs as the
gateway instead: it listens on --listen for calls from its overlord
(mutual TLS; client certificates of the overlord role) and makes them to
the minions behind it on its warm pool. See docs/gateways.md.

With the store on etcd (--store etcd://..., docs/ha.md) several services,
replicas on any machines with the same identity, share it: each open
async job is driven by the one replica holding its lock, an etcd key
under that replica's lease (--lease-ttl). When a replica dies its lease
expires and the others adopt its jobs within seconds; one cut off from
etcd stops driving its jobs at once rather than drive them twice.

On SIGTERM or SIGINT it stops accepting, lets requests in flight finish
for --grace, tells its drivers to stop (each records what it knows; the
jobs stay open for the next service, or the next 'job status'), then exits
0; a second signal exits at once. See docs/serve.md.`,
		Example: `  overlord serve
  overlord serve --listen 10.0.0.1:51235 --log-level debug
  overlord serve --no-enrol            # the local socket only, nothing on the network
  overlord serve --ui 127.0.0.1:8080   # and the web dashboard, on loopback
  overlord serve --ui :8443 --ui-tls   # the dashboard for other hosts, over HTTPS
  curl --unix-socket ~/.local/state/overlord/overlord.sock http://x/metrics   # its metrics
  overlord serve --inventory-every 6h  # an inventory version every 6 hours
  overlord serve --store etcd://10.0.0.5:2379,10.0.0.6:2379,10.0.0.7:2379   # one of several replicas
  systemctl enable --now overlord      # the unit 'make install' installs`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return usageError("--log-level: %v", err)
			}
			logger := slog.New(slog.NewTextHandler(a.Stderr, &slog.HandlerOptions{Level: level}))
			if invEvery < 0 || invKeep < 0 || (invKeep == 0 && cmd.Flags().Changed("inventory-keep")) {
				return usageError("--inventory-every must not be negative and --inventory-keep must be at least 1")
			}
			if noEnrol && cmd.Flags().Changed("listen") {
				return usageError("--no-enrol serves no enrolment endpoint: --listen has nothing to listen for")
			}
			if err := uiF.check(); err != nil {
				return err
			}
			if err := a.recordStore(); err != nil {
				return err
			}
			o := a.overlordWith(logger)
			if o.IsGateway() {
				for _, f := range []string{"no-enrol", "ui", "ui-tls", "ui-cert", "ui-key", "inventory-every", "inventory-keep", "name"} {
					if cmd.Flags().Changed(f) {
						return usageError("--%s: %s holds a gateway ('overlord gateway init'), which serves only calls from its overlord", f, o.Dir)
					}
				}
				return a.serveGateway(cmd.Context(), o, listen, grace, logger)
			}
			if cmd.Flags().Changed("lease-ttl") {
				if leaseTTL < 2*time.Second || leaseTTL > time.Hour {
					return usageError("--lease-ttl %s: give 2s to 1h", leaseTTL)
				}
				if !o.Store.IsEtcd() {
					return usageError("--lease-ttl is for a store on etcd (--store etcd://HOST:2379): a bbolt store's job locks are files")
				}
				o.SetLeaseTTL(leaseTTL)
			}
			var ep *overlord.Endpoint // nil with --no-enrol
			// The HTTP API, on the endpoint's listener; its calls go
			// through the service's pool once OpenService has set it.
			httpAPI := api.New(api.Config{Overlord: o, Logger: logger})
			defer httpAPI.Close()
			if !noEnrol {
				var err error
				cfg := overlord.EndpointConfig{Listen: listen, Name: name, API: httpAPI.RequireCertificate(httpAPI.Handler())}
				if ep, err = o.NewEndpoint(cfg); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			svc, err := o.OpenService(ctx, overlord.ServiceConfig{ReconcileWindow: window, InventoryEvery: invEvery, InventoryKeep: invKeep})
			if err != nil {
				return err
			}
			var epDone <-chan struct{}
			if ep == nil {
				fmt.Fprintf(a.Stderr, "overlord service at %s; no enrolment endpoint (--no-enrol)\n", svc.Socket())
			} else {
				if err := ep.Open(ctx); err != nil {
					_ = svc.Close(ctx)
					return err
				}
				epDone = ep.Done()
				fmt.Fprintf(a.Stderr, "overlord service at %s; enrolment endpoint and HTTP API at https://%s (API: /v1/, client certificates of the overlord role); CA fingerprint %s\n", svc.Socket(), ep.Addr(), ep.CAFingerprint())
			}
			dash, err := a.openUI(ctx, &uiF, o, svc, name, httpAPI.Handler(), svc.Metrics(), logger)
			if err != nil {
				err = fmt.Errorf("dashboard: %w", err)
				if ep != nil {
					err = errors.Join(err, ep.Close(ctx))
				}
				return errors.Join(err, svc.Close(ctx))
			}
			var dashDone <-chan struct{} // nil without --ui
			if dash != nil {
				dashDone = dash.Done()
			}
			select {
			case <-ctx.Done():
			case <-epDone:
			case <-svc.Done():
			case <-dashDone:
			}
			sctx, cancel := graceContext(grace)
			defer cancel()
			logger.Info("overlord serve shutting down: the service and the enrolment endpoint", "grace", grace)
			httpAPI.Close() // event streams end; the requests in flight finish
			var epErr, dashErr error
			if dash != nil {
				dashErr = dash.Close(sctx)
			}
			if ep != nil {
				epErr = ep.Close(sctx)
			}
			return errors.Join(dashErr, epErr, svc.Close(sctx))
		},
	}
	cmd.Flags().StringVar(&listen, "listen", fmt.Sprintf(":%d", enrolment.DefaultPort), "the enrolment endpoint's address")
	cmd.Flags().BoolVar(&noEnrol, "no-enrol", false, "serve no enrolment endpoint: only the local socket (no network listener; no CA key needed)")
	cmd.Flags().StringVar(&name, "name", "", "name in the endpoint's certificate (default: the host name)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().DurationVar(&grace, "grace", 10*time.Second, "how long requests in flight may finish on shutdown")
	uiF.add(cmd)
	cmd.Flags().DurationVar(&window, "reconcile-window", overlord.DefaultReconcileWindow, "reconcile late results of jobs finished this recently, every minute")
	cmd.Flags().DurationVar(&invEvery, "inventory-every", 0, "take an inventory snapshot of every minion this often (0: never)")
	cmd.Flags().DurationVar(&leaseTTL, "lease-ttl", job.DefaultLeaseTTL, "on an etcd store: the TTL of the lease this replica holds its jobs' locks under (how soon others adopt them if it dies)")
	cmd.Flags().IntVar(&invKeep, "inventory-keep", 0, fmt.Sprintf("keep the newest `N` inventory versions; overlord.db remembers N (default: the last N given, else %d)", overlord.DefaultInventoryKeep))
	return cmd
}

// serveGateway runs 'overlord serve' in a gateway's state directory.
func (a *App) serveGateway(ctx context.Context, o *overlord.Overlord, listen string, grace time.Duration, logger *slog.Logger) error {
	g, err := o.OpenGateway(ctx, overlord.GatewayConfig{Listen: listen})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.Stderr, "overlord gateway serving at https://%s (calls from the overlord: client certificates of the overlord role)\n", g.Addr())
	select {
	case <-ctx.Done():
	case <-g.Done():
	}
	sctx, cancel := graceContext(grace)
	defer cancel()
	logger.Info("overlord gateway shutting down", "grace", grace)
	return g.Close(sctx)
}

// graceContext returns the context of a shutdown's grace period: done
// after grace, or at once on a second SIGTERM or SIGINT. cancel stops
// watching for the signal.
func graceContext(grace time.Duration) (context.Context, context.CancelFunc) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	go func() {
		select {
		case <-sig:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() { signal.Stop(sig); cancel() }
}
