// Package minion is the minion daemon: it serves JSON-RPC over HTTPS with
// mutual TLS and runs module methods for overlord identities of its CA,
// calling directly or through a gateway of its CA (caller.go).
//
// Its state directory holds its identity (minion.crt, minion.key, ca.crt,
// installed by Init from a bundle).
package minion

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/internal/gate"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/builtin"
	"github.com/overlordhq/overlord/modules/plugin"
	"github.com/overlordhq/overlord/rpc"
)

// Files in the minion's state directory.
const (
	CertFile = "minion.crt"
	KeyFile  = "minion.key"
)

// DefaultListen is the default listen address.
const DefaultListen = ":51234"

// Timeouts of synchronous calls (Minion.Call).
const (
	DefaultCallTimeout = 60 * time.Second
	MaxCallTimeout     = time.Hour
)

// PluginDir is where a minion finds plugins, in its state directory.
const PluginDir = "modules.d"

// Registry returns the modules a minion with state directory stateDir
// serves: the built-in modules, and the plugins in its modules.d.
func Registry(stateDir string) *modules.Registry { return registry(stateDir, builtin.Options{}) }

// MinionPIDEnv is the environment variable in which the daemon gives an
// async job's runner its own pid.
const MinionPIDEnv = "OVERLORD_MINION_PID"

// RunnerRegistry returns the modules an async job's runner serves: those
// of Registry, with the process module protecting the daemon of pid
// minionPID (0 if unknown) as well as the runner.
func RunnerRegistry(stateDir string, minionPID int) *modules.Registry {
	return registry(stateDir, builtin.Options{MinionPID: minionPID})
}

func registry(stateDir string, opts builtin.Options) *modules.Registry {
	r := builtin.New(opts)
	if stateDir != "" {
		r.AddSource(&plugin.Dir{Path: filepath.Join(stateDir, PluginDir)})
	}
	return r
}

// CheckTrustFiles returns an error if the state directory, or a file in
// it that says whom the minion trusts and what it runs (ca.crt, acl.conf,
// crl.pem, modules.d), is writable by group or others: any of them could
// then make the minion accept their own identity, or run their code. The
// error names the file and the mode it needs.
func CheckTrustFiles(stateDir string) error {
	for _, name := range []string{"", certs.CAFile, ACLFile, CRLFile, PluginDir} {
		path := filepath.Join(stateDir, name)
		fi, err := os.Stat(path)
		if name != "" && errors.Is(err, fs.ErrNotExist) {
			continue // optional
		}
		if err != nil {
			return err
		}
		if perm := fi.Mode().Perm(); perm&0o022 != 0 {
			want := perm &^ 0o022
			return fmt.Errorf("%s has mode %#o, writable by group or others; it must be %#o (chmod %o %s)", path, perm, want, want, path)
		}
	}
	return nil
}

// Identity returns the certificate store in stateDir.
func Identity(stateDir string) certs.Store {
	return certs.Store{Dir: stateDir, CertFile: CertFile, KeyFile: KeyFile}
}

// Init installs a minion bundle into stateDir, after checking that it is a
// minion's bundle. It refuses to replace an installed identity.
func Init(stateDir, bundlePath string) (*certs.Bundle, error) {
	// A bundle holds a private key: it must be as private as one.
	if err := certs.CheckKeyFile(bundlePath); err != nil {
		return nil, err
	}
	b, err := certs.ReadBundle(bundlePath)
	if err != nil {
		return nil, err
	}
	if role := certs.RoleOf(b.Cert); role != certs.RoleMinion {
		return nil, fmt.Errorf("%s holds a certificate with role %q, not a minion's; make one with 'overlord minion add NAME --addr HOST:PORT'", bundlePath, role)
	}
	if _, err := os.Stat(filepath.Join(stateDir, CertFile)); err == nil {
		return nil, fmt.Errorf("%s already holds a minion identity (%s); remove it first to install another", stateDir, CertFile)
	}
	if err := os.MkdirAll(stateDir, certs.DirMode); err != nil {
		return nil, err
	}
	if err := os.Chmod(stateDir, certs.DirMode); err != nil {
		return nil, err
	}
	if err := Identity(stateDir).Install(b); err != nil {
		return nil, err
	}
	return b, nil
}

// Config configures a Server.
type Config struct {
	// StateDir is the minion's state directory (required): its access
	// list, audit log and async jobs live there.
	StateDir string
	// Bundle is the minion's identity; if nil it is loaded from StateDir.
	Bundle *certs.Bundle
	// Listen is the address to listen on; DefaultListen if empty.
	Listen string
	// Listener, if set, is used instead of listening on Listen: the
	// server serves on it from Open and closes it on Close. It lets a
	// caller learn the address before the server exists (tests, socket
	// activation). If Open fails, closing it is the caller's job.
	Listener net.Listener
	// Registry holds the modules served; the built-in modules if nil.
	Registry *modules.Registry
	Logger   *slog.Logger
	// RunnerCommand starts an async job's runner with the job's spool
	// directory appended; default: this executable with "run-job".
	RunnerCommand []string
	// JobRetention and JobKeep bound the finished jobs kept: by age and
	// by count (defaults DefaultJobRetention, DefaultJobKeep).
	JobRetention time.Duration
	JobKeep      int
	// WriteTimeout bounds the time to write an answer, from its start
	// (DefaultWriteTimeout if 0): a client that does not read its answer
	// loses its connection rather than hold a request slot.
	WriteTimeout time.Duration
	// MaxConns bounds the connections past their TLS handshake, those of
	// overlord identities (DefaultMaxConns if 0). At the bound, a new one
	// closes the one idle longest, or is closed if all are busy.
	MaxConns int
	// HandshakeTimeout bounds the time a client has, from its TCP
	// connection, to finish the TLS handshake (DefaultHandshakeTimeout if
	// 0).
	HandshakeTimeout time.Duration
	// MaxPending and MaxPendingPerSource bound the connections still in
	// their handshake, in all and from one source address (IPv4 address,
	// IPv6 /64); at a bound, the oldest is closed (DefaultMaxPending and
	// DefaultMaxPendingPerSource if 0).
	MaxPending          int
	MaxPendingPerSource int
}

// Defaults of Config's connection limits. A client without a certificate
// can only ever hold pending connections: it cannot take the place of an
// overlord's connection, nor keep a new one out.
const (
	DefaultMaxConns            = gate.DefaultMaxConns
	DefaultHandshakeTimeout    = gate.DefaultHandshakeTimeout
	DefaultMaxPending          = gate.DefaultMaxPending
	DefaultMaxPendingPerSource = gate.DefaultMaxPendingPerSource
)

// fileReserve is how many open files a minion keeps for other things
// than connections (stores, spools, runners' pipes, plugins).
const fileReserve = 256

// DefaultWriteTimeout is the default Config.WriteTimeout.
const DefaultWriteTimeout = 2 * time.Minute

// Server is a running minion daemon: New, then Open, then Close.
type Server struct {
	files   *transfers
	acl     *acl
	audit   *auditLog
	cfg     Config
	started time.Time
	jobs    *asyncJobs
	name    string
	ln      *gate.Listener
	srv     *gate.Server
	closed  sync.Once
	rev     *revocation
	ids     *identities // who is calling (caller.go)
}

// New checks the configuration and loads the identity; it does not listen.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.StateDir == "" {
		return nil, ErrNoStateDir
	}

	if cfg.Bundle == nil {
		b, err := Identity(cfg.StateDir).Load()
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("no minion identity in %s: run 'minion init --bundle FILE' first (%w)", cfg.StateDir, err)
			}
			return nil, err
		}
		cfg.Bundle = b
	}
	if role := certs.RoleOf(cfg.Bundle.Cert); role != certs.RoleMinion {
		return nil, fmt.Errorf("identity %q has role %q, not minion", cfg.Bundle.Cert.Subject.CommonName, role)
	}
	if cfg.StateDir != "" {
		if err := CheckTrustFiles(cfg.StateDir); err != nil {
			return nil, err
		}
	}
	s := &Server{cfg: cfg, name: cfg.Bundle.Cert.Subject.CommonName, started: time.Now(),
		files: newTransfers(), acl: newACL(cfg.StateDir)}
	var err error
	if s.rev, err = loadRevocation(cfg.StateDir, cfg.Bundle.CA, cfg.Logger); err != nil {
		return nil, err
	}
	s.ids = newIdentities(cfg.Bundle.CA, s.rev)
	if s.cfg.Registry == nil {
		s.cfg.Registry = registry(cfg.StateDir, builtin.Options{Info: s.info})
	}
	return s, nil
}

// Name returns the minion's name, from its certificate.
func (s *Server) Name() string { return s.name }

// MaxConcurrentRequests bounds the requests a minion serves at once; past
// it, requests are refused with HTTP 503 at once rather than queued.
// MaxRequestsPerIdentity bounds those of one overlord identity, so that
// one cannot take every slot; the calls a gateway makes for an identity
// count as that identity's.
const (
	MaxConcurrentRequests  = 256
	MaxRequestsPerIdentity = 64
)

// ErrNoStateDir is returned by New for a Config without a StateDir: a
// minion without one would have no access list and no audit log.
var ErrNoStateDir = errors.New("minion: no state directory (Config.StateDir): its access list, audit log and async jobs live there")

// handler returns the minion's HTTP handler (JSON-RPC at rpc.Path). It
// serves only for an open server, which has its audit log and async jobs.
func (s *Server) handler() (http.Handler, error) {
	if s.audit == nil || s.jobs == nil {
		return nil, errors.New("minion: a server's handler serves only once it is open (Open)")
	}
	h, err := rpc.NewServer(map[string]any{"Minion": &Service{
		Name: s.name, Registry: s.cfg.Registry, Logger: s.cfg.Logger,
		jobs: s.jobs, files: s.files, acl: s.acl, audit: s.audit, rev: s.rev,
	}})
	if err != nil {
		return nil, err
	}
	// Who is calling is decided before anything else looks: the limits
	// per identity count the identity a gateway calls for.
	return writeDeadlines(s.rev.handler(s.identify(limitConcurrency(h, MaxConcurrentRequests))), s.cfg.WriteTimeout), nil
}

// MaxBodyBytesInFlight bounds the memory the request bodies being read
// at once may take: each request reserves its Content-Length (a request
// without one, the most a body may be) for as long as it is served.
// MaxBodyBytesPerIdentity bounds those of one overlord identity.
const (
	MaxBodyBytesInFlight    = 64 << 20
	MaxBodyBytesPerIdentity = 16 << 20
)

// limitConcurrency serves at most n requests at once, and no more body
// bytes than MaxBodyBytesInFlight, and of one identity at most
// MaxRequestsPerIdentity requests and MaxBodyBytesPerIdentity bytes; it
// refuses the rest with HTTP 503 rather than queueing them.
func limitConcurrency(h http.Handler, n int) http.Handler {
	requests := semaphore.NewWeighted(int64(n))
	bodies := semaphore.NewWeighted(MaxBodyBytesInFlight)
	ids := &identityLimits{inUse: map[string]*identityUse{}}
	busy := func(w http.ResponseWriter, msg string) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, msg, http.StatusServiceUnavailable)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		size := int64(rpc.MaxRequestBytes)
		if r.ContentLength >= 0 && r.ContentLength < size {
			size = r.ContentLength
		}
		id := caller(r)
		if !ids.acquire(id, size) {
			busy(w, "minion busy: too many requests at once from "+id)
			return
		}
		defer ids.release(id, size)
		if !requests.TryAcquire(1) {
			busy(w, "minion busy: too many requests at once")
			return
		}
		defer requests.Release(1)
		if !bodies.TryAcquire(size) {
			busy(w, "minion busy: too many requests at once")
			return
		}
		defer bodies.Release(size)
		h.ServeHTTP(w, r)
	})
}

// identityLimits counts the requests and body bytes each identity has in
// flight.
type identityLimits struct {
	mu    sync.Mutex
	inUse map[string]*identityUse
}

type identityUse struct {
	requests int
	bytes    int64
}

// acquire takes a request slot and size body bytes for id, if id has
// them to spare.
func (l *identityLimits) acquire(id string, size int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.inUse[id]
	if u == nil {
		u = &identityUse{}
	}
	if u.requests >= MaxRequestsPerIdentity || u.bytes+size > MaxBodyBytesPerIdentity {
		return false
	}
	u.requests++
	u.bytes += size
	l.inUse[id] = u
	return true
}

func (l *identityLimits) release(id string, size int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.inUse[id]
	u.requests--
	u.bytes -= size
	if u.requests == 0 {
		delete(l.inUse, id)
	}
}

// writeDeadlines gives every answer at most d to be written, counted from
// when it starts: a client that never reads its answer cannot hold its
// request slot (and the handler's goroutine) longer than that. Until the
// answer starts (a Minion.Call may run for an hour first), the deadline
// is d from the request's start, which only bounds what the server
// writes on its own, such as a 100 Continue.
func writeDeadlines(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Now().Add(d))
		h.ServeHTTP(&deadlineWriter{ResponseWriter: w, rc: rc, d: d}, r)
	})
}

// deadlineWriter sets the connection's write deadline when the answer
// starts.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	d       time.Duration
	started bool
}

func (w *deadlineWriter) start() {
	if !w.started {
		w.started = true
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.d))
	}
}

func (w *deadlineWriter) WriteHeader(code int) {
	w.start()
	w.ResponseWriter.WriteHeader(code)
}

func (w *deadlineWriter) Write(b []byte) (int, error) {
	w.start()
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TLSConfig returns the minion's TLS configuration.
func (s *Server) TLSConfig() (*tls.Config, error) {
	id, err := s.cfg.Bundle.TLS()
	if err != nil {
		return nil, err
	}
	return s.rev.tlsConfig(certs.ServerConfig(id, s.cfg.Bundle.Pool())), nil
}

// Open settles the jobs an earlier daemon left running, then listens and
// serves in the background until Close.
func (s *Server) Open(ctx context.Context) error {
	if s.cfg.StateDir != "" {
		runner := s.cfg.RunnerCommand
		if len(runner) == 0 {
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the minion executable for job runners: %w", err)
			}
			runner = []string{exe, "run-job"}
		}
		if s.cfg.JobRetention <= 0 {
			s.cfg.JobRetention = DefaultJobRetention
		}
		if s.cfg.JobKeep <= 0 {
			s.cfg.JobKeep = DefaultJobKeep
		}
		audit, err := openAudit(s.cfg.StateDir)
		if err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		jobs, err := openAsync(s.cfg.StateDir, runner, s.cfg.Registry, s.cfg.JobRetention, s.cfg.JobKeep, s.cfg.Logger)
		if err != nil {
			audit.Close()
			return err
		}
		s.jobs, s.audit = jobs, audit
	}
	h, err := s.handler()
	if err != nil {
		return err
	}
	tcfg, err := s.TLSConfig()
	if err != nil {
		return err
	}
	ln := s.cfg.Listener
	if ln == nil {
		if ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", s.cfg.Listen); err != nil {
			if s.jobs != nil {
				s.jobs.Close()
				s.audit.Close()
			}
			return err
		}
	}
	s.ln = gate.NewListener(ln, tcfg, s.limits(), s.cfg.Logger.With("component", "listener"))
	s.files.run()
	s.srv = gate.Serve(&http.Server{
		Handler:           h,
		TLSConfig:         tcfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelDebug),
	}, s.ln)
	s.cfg.Logger.Info("minion serving", "name", s.name, "addr", ln.Addr().String())
	return nil
}

// limits returns the connection limits of the configuration, shrunk to
// fit the process's limit of open files (raised to the most allowed).
func (s *Server) limits() gate.Limits {
	lim := gate.Limits{HandshakeTimeout: s.cfg.HandshakeTimeout, MaxPending: s.cfg.MaxPending,
		MaxPendingPerSource: s.cfg.MaxPendingPerSource, MaxConns: s.cfg.MaxConns}
	files, err := gate.RaiseFileLimit()
	if err != nil {
		s.cfg.Logger.Warn("cannot read the limit of open files", "err", err)
		return lim.WithDefaults()
	}
	fitted, ok := lim.Fit(files, fileReserve)
	if !ok {
		s.cfg.Logger.Warn("the limit of open files is too low for the connection limits; lowered them (raise LimitNOFILE)",
			"open_files", files, "max_conns", fitted.MaxConns, "max_pending", fitted.MaxPending)
	}
	return fitted
}

// Addr returns the address the server listens on, once open.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Done is closed when the server has stopped serving.
// Before Open, it is nil.
func (s *Server) Done() <-chan struct{} {
	if s.srv == nil {
		return nil
	}
	return s.srv.Done()
}

// Close stops accepting, lets calls in flight finish until ctx is done,
// then closes every connection and the job store. Async job runners go
// on. Calling it twice is harmless.
func (s *Server) Close(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	var err error
	s.closed.Do(func() {
		defer func() {
			s.files.Close()
			if s.jobs != nil {
				s.jobs.stopHeld(ctx)
				err = errors.Join(err, s.jobs.Close(), s.audit.Close())
			}
		}()
		if s.jobs != nil {
			s.jobs.drain()
		}
		err = s.srv.Close(ctx)
	})
	return err
}

// info is what system.info adds about this daemon.
func (s *Server) info() map[string]any {
	out := map[string]any{
		"name":           s.name,
		"state_dir":      s.cfg.StateDir,
		"started_at":     s.started.UTC().Format(time.RFC3339),
		"uptime_seconds": int64(time.Since(s.started).Seconds()),
		"plugin_dir":     filepath.Join(s.cfg.StateDir, PluginDir),
		"certificate": map[string]any{
			"fingerprint": certs.Fingerprint(s.cfg.Bundle.Cert),
			"not_after":   s.cfg.Bundle.Cert.NotAfter.UTC().Format(time.RFC3339),
		},
	}
	if s.ln != nil {
		out["listen"] = s.ln.Addr().String()
	}
	if s.jobs != nil {
		if running, err := s.jobs.store.running(); err == nil {
			out["async_jobs_running"] = len(running)
		}
	}
	return out
}
