package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/overlord"
)

// Config says which minions a Fleet emulates and where.
type Config struct {
	// StateDir is the overlord's state directory: its CA issues the
	// minions' certificates and, with Register, its overlord.db records
	// them.
	StateDir string
	// Names are the minions' names.
	Names []string
	// Listeners serve the minions, Names[i] on Listeners[i%len]: every
	// listener serves any of the fleet's names (the certificate is chosen
	// by SNI), but each minion is registered at one of them.
	Listeners []net.Listener
	// Via, if set, registers the minions behind these gateways (the
	// first preferred).
	Via []string
	// Register records the minions in overlord.db, as `overlord minion
	// add` does (certificate and registry entry), in big transactions.
	Register bool
	// KeyType of the minions' keys (ECDSA by default, as `minion add`).
	KeyType certs.KeyType
	// SharedKey gives every minion one key (each its own certificate):
	// quicker to set up; a handshake costs the same.
	SharedKey bool
	Logger    *slog.Logger
}

// Fleet is N emulated minions: each has a certificate issued by the
// overlord's CA for its name (role minion), chosen by SNI on a shared
// listener, and answers JSON-RPC as a minion does, without a process,
// a spool or a store of its own.
type Fleet struct {
	cfg     Config
	ca      *x509.Certificate
	byName  map[string]*tls.Certificate
	minions []jobs.Minion
	svc     *minionService
	servers []*http.Server
	wg      sync.WaitGroup
	closed  atomic.Bool
}

// NewFleet issues the minions' certificates and, with cfg.Register,
// registers them. Nothing is served before Serve.
func NewFleet(cfg Config) (*Fleet, error) {
	if len(cfg.Names) == 0 {
		return nil, errors.New("no minions to emulate")
	}
	if len(cfg.Listeners) == 0 {
		return nil, errors.New("no listener")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	o := overlord.New(cfg.StateDir, "", time.Minute, cfg.Logger)
	ca, err := o.Authority()
	if err != nil {
		return nil, err
	}
	f := &Fleet{cfg: cfg, ca: ca.Cert, byName: make(map[string]*tls.Certificate, len(cfg.Names))}
	f.svc = newMinionService(ca.Cert)
	certsOut := make([]*x509.Certificate, len(cfg.Names))
	var shared crypto.Signer
	if cfg.SharedKey {
		k, err := certs.NewKey(cfg.KeyType)
		if err != nil {
			return nil, err
		}
		shared = k
	}
	// Issue in parallel: signing is most of the set-up.
	tlsCerts := make([]tls.Certificate, len(cfg.Names))
	errs := make([]error, len(cfg.Names))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(1, min(8, len(cfg.Names)/64)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(cfg.Names); i = int(next.Add(1) - 1) {
				certsOut[i], tlsCerts[i], errs[i] = issue(ca, cfg.Names[i], cfg.KeyType, shared)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	for i, name := range cfg.Names {
		if _, dup := f.byName[certs.NameKey(name)]; dup {
			return nil, fmt.Errorf("minion %s given twice", name)
		}
		f.byName[certs.NameKey(name)] = &tlsCerts[i]
		f.minions = append(f.minions, jobs.Minion{
			Name: name, Addr: cfg.Listeners[i%len(cfg.Listeners)].Addr().String(),
			Fingerprint: certs.Fingerprint(certsOut[i]), AddedAt: now, Via: cfg.Via,
		})
	}
	if cfg.Register {
		if err := register(o.Store, f.minions, certsOut, now); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// issue makes name's certificate, with its own key or shared.
func issue(ca *certs.Authority, name string, kt certs.KeyType, shared crypto.Signer) (*x509.Certificate, tls.Certificate, error) {
	var c *x509.Certificate
	var key crypto.Signer
	if shared == nil {
		cert, k, err := ca.Issue(name, certs.RoleMinion, kt)
		if err != nil {
			return nil, tls.Certificate{}, err
		}
		c, key = cert, k
	} else {
		csr, err := certs.NewCSR(shared, name)
		if err != nil {
			return nil, tls.Certificate{}, err
		}
		cert, err := ca.SignCSR(csr, name)
		if err != nil {
			return nil, tls.Certificate{}, err
		}
		c, key = cert, shared
	}
	return c, tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: key}, nil
}

// registerWriters is how many writes to overlord.db are made at once:
// the store commits concurrent writes of one process in one transaction.
const registerWriters = 512

// register records the minions as `overlord minion add` would, each its
// certificate and registry entry; the writes go together, so the store
// groups them into few transactions.
func register(store *jobs.Store, minions []jobs.Minion, issued []*x509.Certificate, now time.Time) error {
	errs := make([]error, len(minions))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(registerWriters, len(minions)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(minions); i = int(next.Add(1) - 1) {
				c := issued[i]
				errs[i] = store.AddMinionCert(minions[i], jobs.Cert{
					Serial: certs.Serial(c), Name: c.Subject.CommonName, Role: string(certs.RoleMinion),
					Fingerprint: certs.Fingerprint(c), KeyFingerprint: certs.KeyFingerprint(c.PublicKey),
					Source: overlord.SourceMinionAdd, IssuedAt: now, NotAfter: c.NotAfter.UTC(),
				})
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Minions returns the emulated minions as registered.
func (f *Fleet) Minions() []jobs.Minion { return f.minions }

// tlsConfig is the minions' side of TLS: a name's certificate by SNI; a
// client certificate of the CA required, of the overlord or gateway role,
// not revoked by the list the overlord last pushed.
func (f *Fleet) tlsConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(f.ca)
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c, ok := f.byName[certs.NameKey(hello.ServerName)]; ok {
				return c, nil
			}
			return nil, fmt.Errorf("no emulated minion named %q", hello.ServerName)
		},
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  pool,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return &tls.CertificateVerificationError{Err: errors.New("peer presented no certificate")}
			}
			if r := certs.RoleOf(cs.PeerCertificates[0]); r != certs.RoleOverlord && r != certs.RoleGateway {
				return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates,
					Err: fmt.Errorf("certificate %q has role %q, want overlord or gateway", cs.PeerCertificates[0].Subject.CommonName, r)}
			}
			return nil
		},
	}
	return certs.RefuseRevoked(cfg, f.svc.crl)
}

// Serve serves every listener until Close. It returns at once.
func (f *Fleet) Serve() error {
	h, err := f.svc.handler()
	if err != nil {
		return err
	}
	cfg := f.tlsConfig()
	for _, l := range f.cfg.Listeners {
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute, // the minion's
			// HTTP/1.1 only, as the service's pool speaks it.
			TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
			ErrorLog:     slog.NewLogLogger(f.cfg.Logger.Handler(), slog.LevelDebug),
		}
		f.servers = append(f.servers, srv)
		tl := tls.NewListener(l, cfg)
		f.wg.Go(func() {
			if err := srv.Serve(tl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				f.cfg.Logger.Error("serve", "addr", l.Addr().String(), "err", err)
			}
		})
	}
	return nil
}

// Close stops serving, waiting up to ctx for the requests in flight.
func (f *Fleet) Close(ctx context.Context) error {
	if f.closed.Swap(true) {
		return nil
	}
	var errs []error
	for _, s := range f.servers {
		if err := s.Shutdown(ctx); err != nil {
			errs = append(errs, err, s.Close())
		}
	}
	f.svc.close()
	f.wg.Wait()
	return errors.Join(errs...)
}
