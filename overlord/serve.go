package overlord

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/enrolment"
	"github.com/overlordhq/overlord/internal/gate"
)

// Limits of the enrolment endpoint.
const (
	// MaxEndpointRequests bounds the requests handled at once; more get
	// HTTP 503 (kind busy) at once rather than queueing.
	MaxEndpointRequests = 32
	// MaxEndpointConns bounds the connections past their TLS handshake,
	// idle ones included; at the bound a new one closes the one idle
	// longest. Connections still in their handshake have their own
	// bounds (gate.DefaultMaxPending, gate.DefaultMaxPendingPerSource)
	// and gate.DefaultHandshakeTimeout to finish it.
	MaxEndpointConns   = 256
	endpointReadHeader = 5 * time.Second
	endpointRead       = 10 * time.Second
	endpointWrite      = 30 * time.Second
	endpointIdle       = 30 * time.Second
	endpointMaxHeader  = 16 << 10
)

// EndpointConfig configures an Endpoint.
type EndpointConfig struct {
	// Listen is the address to listen on (default ":51235").
	Listen string
	// Listener, if set, is served on instead of listening on Listen; it
	// is closed by Close.
	Listener net.Listener
	// Name is the endpoint certificate's name (default: the host name,
	// else "overlord-endpoint"). Minions do not check it.
	Name string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// API, if set, is served under /v1/ and at /metrics (the HTTP API,
	// package api): the listener asks clients for a certificate without
	// requiring one, and API checks it.
	API http.Handler
}

// Endpoint is the enrolment endpoint (`overlord serve`): HTTPS with a
// certificate of the endpoint role that the CA issues when it opens and
// that lives only in memory. Each request opens overlord.db for one
// transaction; nothing holds it open in between. New, then Open, then
// Close.
type Endpoint struct {
	o      *Overlord
	cfg    EndpointConfig
	ca     *certs.Authority
	logger *slog.Logger
	sem    chan struct{}
	ln     *gate.Listener
	srv    *gate.Server
}

// NewEndpoint loads the CA and makes the endpoint's certificate.
func (o *Overlord) NewEndpoint(cfg EndpointConfig) (*Endpoint, error) {
	if cfg.Listen == "" {
		cfg.Listen = fmt.Sprintf(":%d", enrolment.DefaultPort)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Name == "" {
		cfg.Name = "overlord-endpoint"
		if h, err := os.Hostname(); err == nil && certs.CheckName(h) == nil {
			cfg.Name = h
		}
	}
	ca, err := o.Authority()
	if err != nil {
		return nil, err
	}
	// The store must be there: every request needs it.
	if _, err := o.Store.Tokens(); err != nil {
		return nil, err
	}
	return &Endpoint{o: o, cfg: cfg, ca: ca, logger: o.Logger.With("component", "endpoint"),
		sem: make(chan struct{}, MaxEndpointRequests)}, nil
}

// CAFingerprint returns the fingerprint minions verify the endpoint by.
func (e *Endpoint) CAFingerprint() string { return certs.Fingerprint(e.ca.Cert) }

// tlsConfig issues the endpoint's certificate and presents it with the CA
// certificate, which a minion with only the CA's fingerprint needs.
func (e *Endpoint) tlsConfig() (*tls.Config, error) {
	cert, key, err := e.ca.Issue(e.cfg.Name, certs.RoleEndpoint, keyTypeOf(e.ca))
	if err != nil {
		return nil, err
	}
	// Minions enrolling have no certificate; API clients present one,
	// which the API verifies (and answers 401 in JSON, not with a TLS
	// alert, when it is not good).
	clientAuth := tls.NoClientCert
	if e.cfg.API != nil {
		clientAuth = tls.RequestClientCert
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw, e.ca.Cert.Raw}, PrivateKey: key, Leaf: cert}},
		ClientAuth:   clientAuth,
	}, nil
}

// keyTypeOf returns the type of the CA's key, which the endpoint's key
// follows.
func keyTypeOf(ca *certs.Authority) certs.KeyType {
	if _, ok := ca.Key.(ed25519.PrivateKey); ok {
		return certs.Ed25519
	}
	return certs.ECDSA
}

// Handler returns the endpoint's HTTP handler.
func (e *Endpoint) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+enrolment.Path, e.enrol)
	if e.cfg.API != nil {
		mux.Handle("/v1/", e.cfg.API)
		mux.Handle("GET /metrics", e.cfg.API)
	}
	return mux
}

func (e *Endpoint) enrol(w http.ResponseWriter, r *http.Request) {
	select {
	case e.sem <- struct{}{}:
		defer func() { <-e.sem }()
	default:
		e.refuse(w, enrolment.Errorf(enrolment.KindBusy, "the endpoint is busy; try again"))
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		e.refuse(w, enrolment.Errorf(enrolment.KindBadRequest, "Content-Type must be application/json"))
		return
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, enrolment.MaxRequestBytes))
	dec.DisallowUnknownFields()
	var req enrolment.Request
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			err = fmt.Errorf("request body over %d bytes", tooBig.Limit)
		}
		e.refuse(w, enrolment.Errorf(enrolment.KindBadRequest, "unreadable request: %v", err))
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		e.refuse(w, enrolment.Errorf(enrolment.KindBadRequest, "unreadable request: more after the JSON object"))
		return
	}
	reply, err := e.o.Enrol(e.ca, req, r.RemoteAddr, e.cfg.Now())
	if err != nil {
		var ee *enrolment.Error
		if !errors.As(err, &ee) {
			ee = enrolment.Errorf(enrolment.KindInternal, "%v", err)
		}
		e.logger.Info("enrolment refused", "name", req.Name, "from", r.RemoteAddr, "kind", ee.Kind, "err", ee.Message)
		e.refuse(w, ee)
		return
	}
	e.logger.Info("enrolment", "name", reply.Name, "addr", req.Addr, "from", r.RemoteAddr, "state", reply.State, "token", req.Token != "")
	e.o.metrics.Enrolment(reply.State)
	code := http.StatusOK
	if reply.State == enrolment.StatePending {
		code = http.StatusAccepted
	}
	writeJSONReply(w, code, reply)
}

// refuse answers an enrolment request with its refusal, and counts it
// by kind in the service's metrics.
func (e *Endpoint) refuse(w http.ResponseWriter, ee *enrolment.Error) {
	e.o.metrics.Enrolment(ee.Kind)
	writeJSONReply(w, enrolment.HTTPStatus(ee.Kind), enrolment.ErrorReply{Error: ee})
}

func writeJSONReply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Open listens and serves in the background until Close.
func (e *Endpoint) Open(ctx context.Context) error {
	tcfg, err := e.tlsConfig()
	if err != nil {
		return err
	}
	ln := e.cfg.Listener
	if ln == nil {
		if ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", e.cfg.Listen); err != nil {
			return err
		}
	}
	e.ln = gate.NewListener(ln, tcfg, gate.Limits{MaxConns: MaxEndpointConns}, e.logger)
	e.srv = gate.Serve(&http.Server{
		Handler:           e.Handler(),
		TLSConfig:         tcfg,
		ReadHeaderTimeout: endpointReadHeader,
		ReadTimeout:       endpointRead,
		WriteTimeout:      endpointWrite,
		IdleTimeout:       endpointIdle,
		MaxHeaderBytes:    endpointMaxHeader,
		ErrorLog:          slog.NewLogLogger(e.logger.Handler(), slog.LevelDebug),
	}, e.ln)
	e.logger.Info("enrolment endpoint serving", "addr", ln.Addr().String(), "ca_fingerprint", e.CAFingerprint())
	return nil
}

// Addr returns the address the endpoint listens on, once open.
func (e *Endpoint) Addr() net.Addr { return e.ln.Addr() }

// Done is closed when the endpoint has stopped serving; before Open, it
// is nil.
func (e *Endpoint) Done() <-chan struct{} {
	if e.srv == nil {
		return nil
	}
	return e.srv.Done()
}

// Close stops accepting, lets requests in flight finish until ctx is
// done, then closes every connection. Calling it twice is harmless.
func (e *Endpoint) Close(ctx context.Context) error {
	if e.srv == nil {
		return nil
	}
	return e.srv.Close(ctx)
}
