package overlord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/enrolment"
	"github.com/overlordhq/overlord/internal/buildinfo"
	"github.com/overlordhq/overlord/internal/gate"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/rpc"
)

// A gateway's identity in its state directory ('overlord gateway init').
const (
	GatewayCertFile = "gateway.crt"
	GatewayKeyFile  = "gateway.key"
)

// gatewayStopPath stops a bundle the gateway fans out (the top's Ctrl-C).
const gatewayStopPath = "/v1/gateway/stop/"

// GatewayPingPath answers a gateway's name and version.
const GatewayPingPath = "/v1/gateway/ping"

func (o *Overlord) gatewayStore() certs.Store {
	return certs.Store{Dir: o.Dir, CertFile: GatewayCertFile, KeyFile: GatewayKeyFile}
}

// IsGateway reports whether the state directory holds a gateway's
// identity: 'overlord serve' there runs as the gateway.
func (o *Overlord) IsGateway() bool {
	_, err := os.Stat(filepath.Join(o.Dir, GatewayCertFile))
	return err == nil
}

// GatewayIdentity loads the gateway's identity.
func (o *Overlord) GatewayIdentity() (*certs.Bundle, error) {
	b, err := o.gatewayStore().Load()
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no gateway identity in %s: run 'overlord gateway init --bundle FILE' there first", o.Dir)
	}
	if err != nil {
		return nil, err
	}
	if role := certs.RoleOf(b.Cert); role != certs.RoleGateway {
		return nil, fmt.Errorf("%s: certificate %q has role %q, not gateway", o.Dir, b.Cert.Subject.CommonName, role)
	}
	return b, nil
}

// InitGateway installs a gateway's bundle (from 'overlord gateway add') in
// the state directory and creates its store. It refuses a directory that
// holds a CA or another identity.
func (o *Overlord) InitGateway(b *certs.Bundle) error {
	if role := certs.RoleOf(b.Cert); role != certs.RoleGateway {
		return fmt.Errorf("the bundle is for %q, of role %q: not a gateway's (make one with 'overlord gateway add')", b.Cert.Subject.CommonName, role)
	}
	for _, f := range []string{certs.CAKeyFile, CertFile, GatewayCertFile} {
		if _, err := os.Stat(filepath.Join(o.Dir, f)); err == nil {
			return fmt.Errorf("%s already holds %s: a gateway needs a state directory of its own (--state-dir)", o.Dir, f)
		}
	}
	if err := os.MkdirAll(o.Dir, certs.DirMode); err != nil {
		return err
	}
	if err := os.Chmod(o.Dir, certs.DirMode); err != nil {
		return err
	}
	if err := o.gatewayStore().Install(b); err != nil {
		return err
	}
	return o.Store.Init()
}

// GatewayConfig configures a gateway's server.
type GatewayConfig struct {
	// Listen is the address to listen on (default ":51235").
	Listen string
	// Listener, if set, is served on instead; closed by Close.
	Listener net.Listener
}

// GatewayServer is 'overlord serve' in a gateway's state directory: an
// HTTPS listener (TLS 1.3, client certificates of the overlord role
// required) that takes calls for minions behind it and makes them on its
// warm pool, on behalf of the caller. It keeps no registry: each request
// carries the minions' addresses and pins.
type GatewayServer struct {
	name   string
	svc    *Service // its pool and the call and forward handlers
	logger *slog.Logger
	ln     *gate.Listener
	srv    *gate.Server
}

// OpenGateway loads the gateway identity, makes its pool and serves.
func (o *Overlord) OpenGateway(ctx context.Context, cfg GatewayConfig) (*GatewayServer, error) {
	id, err := o.GatewayIdentity()
	if err != nil {
		return nil, err
	}
	tlsID, err := id.TLS()
	if err != nil {
		return nil, err
	}
	if cfg.Listen == "" {
		cfg.Listen = fmt.Sprintf(":%d", enrolment.DefaultPort)
	}
	name := id.Cert.Subject.CommonName
	logger := o.Logger.With("component", "gateway", "gateway", name)
	p := &pool{o: o, static: true, ca: id.CA}
	noGateways := map[string]jobs.Gateway{}
	p.gateways.Store(&noGateways)
	pinned := func(n string) (string, bool) { m, ok := p.minion(n); return m.Fingerprint, ok }
	p.client = rpc.NewClient(rpc.ClientConfig{
		TLS:          certs.Pin(certs.ClientConfig(tlsID, id.Pool()), pinned),
		Resolve:      func(n string) (string, bool) { m, ok := p.minion(n); return m.Addr, ok },
		IdleTimeout:  PoolIdleTimeout,
		MaxPerMinion: PoolPerMinion,
		MaxConns:     poolMaxConns(),
		Observe:      p.reach.observe,
	})
	g := &GatewayServer{name: name, svc: &Service{o: o, pool: p, logger: logger}, logger: logger}
	ln := cfg.Listener
	if ln == nil {
		if ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Listen); err != nil {
			return nil, err
		}
	}
	tcfg := certs.GatewayServerConfig(tlsID, id.Pool())
	g.ln = gate.NewListener(ln, tcfg, gate.Limits{MaxConns: MaxGatewayConns}, logger)
	g.srv = gate.Serve(&http.Server{
		Handler:           g.Handler(),
		TLSConfig:         tcfg,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       PoolIdleTimeout + 30*time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}, g.ln)
	logger.Info("gateway serving", "addr", ln.Addr().String())
	return g, nil
}

// MaxGatewayConns bounds the connections from overlords a gateway keeps
// past their handshake.
const MaxGatewayConns = 1024

// Handler returns the gateway's routes.
func (g *GatewayServer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+rpc.GatewayMinionPath+"{name}", g.onBehalf(g.svc.forward))
	mux.HandleFunc("POST "+rpc.GatewayCallPath, g.onBehalf(g.svc.call))
	mux.HandleFunc("POST "+gatewayStopPath+"{id}", g.onBehalf(g.svc.stopCall))
	mux.HandleFunc("GET "+GatewayPingPath, func(w http.ResponseWriter, _ *http.Request) {
		writeJSONReply(w, http.StatusOK, map[string]string{"name": g.name, "version": buildinfo.Version()})
	})
	return mux
}

// onBehalf makes the request's calls on behalf of its caller: the TLS
// layer has checked the caller's certificate (of the CA, overlord role);
// the minion checks it again, and its revocation, and applies its ACL.
func (g *GatewayServer) onBehalf(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "a client certificate is required", http.StatusUnauthorized)
			return
		}
		caller := r.TLS.PeerCertificates[0]
		g.logger.Debug("gateway request", "caller", caller.Subject.CommonName, "path", r.URL.Path, "remote", r.RemoteAddr)
		h(w, r.WithContext(rpc.WithOnBehalfOf(r.Context(), caller)))
	}
}

// Addr returns the address the gateway listens on.
func (g *GatewayServer) Addr() net.Addr { return g.ln.Addr() }

// Done is closed when the gateway has stopped serving.
func (g *GatewayServer) Done() <-chan struct{} { return g.srv.Done() }

// Close stops accepting, lets requests in flight finish until ctx is
// done, then closes every connection and the pool's.
func (g *GatewayServer) Close(ctx context.Context) error {
	err := g.srv.Close(ctx)
	g.svc.pool.client.Close()
	return err
}
