package overlord

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/enrolment"
	"github.com/overlordhq/overlord/internal/atomicfile"
	"github.com/overlordhq/overlord/internal/buildinfo"
	"github.com/overlordhq/overlord/internal/gate"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/rpc"
)

// A gateway's identity in its state directory ('overlord gateway init').
const (
	GatewayCertFile = "gateway.crt"
	GatewayKeyFile  = "gateway.key"
	// GatewayCRLFile is the revocation list the overlord last sent the
	// gateway (PEM): it refuses the identities it revokes.
	GatewayCRLFile = "gateway-crl.pem"
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
	dir    string
	ca     *x509.Certificate
	svc    *Service // its pool and the call and forward handlers
	logger *slog.Logger
	ln     *gate.Listener
	srv    *gate.Server

	crlMu sync.Mutex                // one update of the list at a time
	crl   atomic.Pointer[certs.CRL] // the list in force; nil: none yet
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
	g := &GatewayServer{name: name, dir: o.Dir, ca: id.CA, svc: &Service{o: o, pool: p, logger: logger}, logger: logger}
	if err := g.loadCRL(); err != nil {
		return nil, err
	}
	ln := cfg.Listener
	if ln == nil {
		if ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Listen); err != nil {
			return nil, err
		}
	}
	tcfg := certs.RefuseRevoked(certs.GatewayServerConfig(tlsID, id.Pool()), g.crl.Load)
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
	mux.HandleFunc("POST "+rpc.GatewayCRLPath, g.onBehalf(g.updateCRL))
	mux.HandleFunc("GET "+GatewayPingPath, func(w http.ResponseWriter, _ *http.Request) {
		writeJSONReply(w, http.StatusOK, map[string]string{"name": g.name, "version": buildinfo.Version()})
	})
	return mux
}

// onBehalf makes the request's calls on behalf of its caller: the TLS
// layer has checked the caller's certificate (of the CA, overlord role,
// not revoked by the gateway's list when it connected); onBehalf checks
// the list again (it may be newer) and answers with its number
// (rpc.CRLHeader), so that an overlord with a newer one sends it. The
// minion checks the caller again, and its revocation, and applies its
// ACL.
func (g *GatewayServer) onBehalf(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "a client certificate is required", http.StatusUnauthorized)
			return
		}
		caller := r.TLS.PeerCertificates[0]
		crl := g.crl.Load()
		w.Header().Set(rpc.CRLHeader, strconv.FormatInt(crl.NumberOf(), 10))
		if err := certs.CheckRevoked(crl, caller); err != nil {
			// Revoked since this connection was made: the handshake
			// refuses it from then on.
			g.logger.Warn("gateway request refused", "caller", caller.Subject.CommonName, "err", err, "remote", r.RemoteAddr)
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
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

// loadCRL reads the revocation list the overlord last sent, if any. A
// damaged one stops the gateway: starting without it would let the
// identities it revokes back in.
func (g *GatewayServer) loadCRL() error {
	path := filepath.Join(g.dir, GatewayCRLFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	der, err := certs.DecodeCRL(data)
	if err == nil {
		var crl *certs.CRL
		if crl, err = certs.ParseCRL(der, g.ca); err == nil {
			g.crl.Store(crl)
			return nil
		}
	}
	return fmt.Errorf("%s: %v; remove it and the overlord sends its list again at its next call (until then the gateway refuses no identity of the CA)", path, err)
}

// updateCRL keeps a revocation list an overlord sends (rpc.GatewayCRLPath)
// if it is the CA's and newer than the gateway's: written to the state
// directory first, then in force.
func (g *GatewayServer) updateCRL(w http.ResponseWriter, r *http.Request) {
	var p rpc.UpdateCRLParams
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 2*certs.MaxCRLBytes+1024)).Decode(&p); err != nil {
		http.Error(w, "bad revocation list request: "+err.Error(), http.StatusBadRequest)
		return
	}
	crl, err := certs.ParseCRL(p.CRL, g.ca)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	g.crlMu.Lock()
	defer g.crlMu.Unlock()
	cur := g.crl.Load()
	if crl.Number <= cur.NumberOf() {
		writeJSONReply(w, http.StatusOK, rpc.UpdateCRLReply{Number: cur.NumberOf(), Revoked: cur.Len()})
		return
	}
	if err := atomicfile.WriteFile(filepath.Join(g.dir, GatewayCRLFile), certs.EncodeCRL(crl.DER), atomicfile.Options{Mode: 0o644}); err != nil {
		g.logger.Error("could not keep the revocation list", "crl", crl.Number, "err", err)
		http.Error(w, "could not keep the revocation list: "+err.Error(), http.StatusInternalServerError)
		return
	}
	g.crl.Store(crl)
	g.logger.Info("revocation list updated", "crl", crl.Number, "revoked", crl.Len(), "from", r.TLS.PeerCertificates[0].Subject.CommonName)
	writeJSONReply(w, http.StatusOK, rpc.UpdateCRLReply{Number: crl.Number, Updated: true, Revoked: crl.Len()})
}
