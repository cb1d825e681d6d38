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
	"sync"
	"time"

	"golang.org/x/net/netutil"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/enrolment"
)

// Limits of the enrolment endpoint.
const (
	// MaxEndpointRequests bounds the requests handled at once; more get
	// HTTP 503 (kind busy) at once rather than queueing.
	MaxEndpointRequests = 32
	// MaxEndpointConns bounds the connections open at once, idle ones
	// included; more wait in the kernel's backlog.
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
	ln     net.Listener
	srv    *http.Server
	done   chan struct{}
	errMu  sync.Mutex
	err    error
	closed sync.Once
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
		sem: make(chan struct{}, MaxEndpointRequests), done: make(chan struct{})}, nil
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
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw, e.ca.Cert.Raw}, PrivateKey: key, Leaf: cert}},
		ClientAuth:   tls.NoClientCert,
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
	return mux
}

func (e *Endpoint) enrol(w http.ResponseWriter, r *http.Request) {
	select {
	case e.sem <- struct{}{}:
		defer func() { <-e.sem }()
	default:
		writeEnrolError(w, enrolment.Errorf(enrolment.KindBusy, "the endpoint is busy; try again"))
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeEnrolError(w, enrolment.Errorf(enrolment.KindBadRequest, "Content-Type must be application/json"))
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
		writeEnrolError(w, enrolment.Errorf(enrolment.KindBadRequest, "unreadable request: %v", err))
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		writeEnrolError(w, enrolment.Errorf(enrolment.KindBadRequest, "unreadable request: more after the JSON object"))
		return
	}
	reply, err := e.o.Enrol(e.ca, req, r.RemoteAddr, e.cfg.Now())
	if err != nil {
		var ee *enrolment.Error
		if !errors.As(err, &ee) {
			ee = enrolment.Errorf(enrolment.KindInternal, "%v", err)
		}
		e.logger.Info("enrolment refused", "name", req.Name, "from", r.RemoteAddr, "kind", ee.Kind, "err", ee.Message)
		writeEnrolError(w, ee)
		return
	}
	e.logger.Info("enrolment", "name", reply.Name, "addr", req.Addr, "from", r.RemoteAddr, "state", reply.State, "token", req.Token != "")
	code := http.StatusOK
	if reply.State == enrolment.StatePending {
		code = http.StatusAccepted
	}
	writeJSONReply(w, code, reply)
}

func writeEnrolError(w http.ResponseWriter, e *enrolment.Error) {
	writeJSONReply(w, enrolment.HTTPStatus(e.Kind), enrolment.ErrorReply{Error: e})
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
	e.ln = ln
	ln = netutil.LimitListener(ln, MaxEndpointConns)
	e.srv = &http.Server{
		Handler:           e.Handler(),
		TLSConfig:         tcfg,
		ReadHeaderTimeout: endpointReadHeader,
		ReadTimeout:       endpointRead,
		WriteTimeout:      endpointWrite,
		IdleTimeout:       endpointIdle,
		MaxHeaderBytes:    endpointMaxHeader,
		ErrorLog:          slog.NewLogLogger(e.logger.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(e.done)
		err := e.srv.Serve(tls.NewListener(ln, tcfg))
		if !errors.Is(err, http.ErrServerClosed) {
			e.errMu.Lock()
			e.err = err
			e.errMu.Unlock()
		}
	}()
	e.logger.Info("enrolment endpoint serving", "addr", ln.Addr().String(), "ca_fingerprint", e.CAFingerprint())
	return nil
}

// Addr returns the address the endpoint listens on, once open.
func (e *Endpoint) Addr() net.Addr { return e.ln.Addr() }

// Done is closed when the endpoint has stopped serving.
func (e *Endpoint) Done() <-chan struct{} { return e.done }

// Close stops accepting, lets requests in flight finish until ctx is
// done, then closes every connection. Calling it twice is harmless.
func (e *Endpoint) Close(ctx context.Context) error {
	if e.srv == nil {
		return nil
	}
	var err error
	e.closed.Do(func() {
		if err = e.srv.Shutdown(ctx); err != nil {
			e.srv.Close()
		}
		<-e.done
		e.errMu.Lock()
		if e.err != nil {
			err = e.err
		}
		e.errMu.Unlock()
	})
	return err
}
