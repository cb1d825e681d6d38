package ui

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/overlordhq/overlord/internal/gate"
)

// Limits of the dashboard's server. There is no write timeout: an event
// stream (/v1/jobs/{id}/events) lasts as long as its job.
const (
	// MaxConns bounds the TLS connections past their handshake (gate).
	MaxConns          = 256
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 32 << 10
)

// ErrNotLoopback is returned by CheckAddr and Open for plain HTTP on an
// address that is not a loopback one.
var ErrNotLoopback = errors.New("the dashboard serves plain HTTP only on a loopback address (127.0.0.1, [::1], localhost)")

// ServeConfig says where Open serves the dashboard.
type ServeConfig struct {
	// Addr is HOST:PORT to listen on.
	Addr string
	// Listener, if set, is served on instead of listening on Addr; Close
	// closes it.
	Listener net.Listener
	// TLS, if set, serves HTTPS with it; nil serves plain HTTP, which
	// only a loopback address may.
	TLS *tls.Config
	// Name, if set, is the host in URL: the name the TLS certificate
	// carries. Default: Addr's host, or the host name when that is all
	// addresses (":8080", "0.0.0.0:8080").
	Name string
}

// CheckAddr checks an address for Open: HOST:PORT, with a loopback host
// for plain HTTP (withTLS false).
func CheckAddr(addr string, withTLS bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not HOST:PORT: %w", addr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if withTLS || host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %q is not one; serve it with TLS for other addresses", ErrNotLoopback, addr)
	}
	return nil
}

// server is the dashboard's HTTP server, once Open.
type server struct {
	srv  *gate.Server
	base string
}

// Open listens and serves the dashboard in the background until Close.
func (u *UI) Open(ctx context.Context, cfg ServeConfig) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.srv != nil {
		return errors.New("the dashboard is already open")
	}
	ln := cfg.Listener
	if ln == nil {
		if err := CheckAddr(cfg.Addr, cfg.TLS != nil); err != nil {
			return err
		}
		var err error
		if ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Addr); err != nil {
			return fmt.Errorf("dashboard: %w", err)
		}
	}
	// The name may have resolved to something else than a loopback
	// address; what counts is where it listens.
	if tcp, ok := ln.Addr().(*net.TCPAddr); cfg.TLS == nil && (!ok || !tcp.IP.IsLoopback()) {
		ln.Close()
		return fmt.Errorf("%w: it would listen on %s", ErrNotLoopback, ln.Addr())
	}
	base := baseURL(cfg, ln.Addr())
	var served net.Listener = ln
	if cfg.TLS != nil {
		u.secure = true
		served = gate.NewListener(ln, cfg.TLS, gate.Limits{MaxConns: MaxConns}, u.logger)
	}
	srv := gate.Serve(&http.Server{
		Handler:           u.Handler(),
		TLSConfig:         cfg.TLS,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(u.logger.Handler(), slog.LevelDebug),
	}, served)
	u.srv = &server{srv: srv, base: base}
	u.logger.Info("dashboard serving", "addr", ln.Addr().String(), "url", base, "tls", cfg.TLS != nil)
	return nil
}

// baseURL returns the dashboard's URL for a listener at addr.
func baseURL(cfg ServeConfig, addr net.Addr) string {
	scheme := "http"
	if cfg.TLS != nil {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return scheme + "://" + addr.String()
	}
	if h, _, err := net.SplitHostPort(cfg.Addr); err == nil && h != "" {
		host = h
	}
	switch ip := net.ParseIP(host); {
	case cfg.Name != "":
		host = cfg.Name
	case host == "" || ip != nil && ip.IsUnspecified():
		if host, _ = os.Hostname(); host == "" {
			host = "localhost"
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// URL returns the dashboard's address ("http://127.0.0.1:8080"), once
// Open; "" before.
func (u *UI) URL() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.srv == nil {
		return ""
	}
	return u.srv.base
}

// Addr returns the address the dashboard listens on, once Open; nil
// before.
func (u *UI) Addr() net.Addr {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.srv == nil {
		return nil
	}
	return u.srv.srv.Addr()
}

// Done is closed when the dashboard has stopped serving; before Open, it
// is nil.
func (u *UI) Done() <-chan struct{} {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.srv == nil {
		return nil
	}
	return u.srv.srv.Done()
}

// Close stops accepting, lets requests in flight finish until ctx is
// done (event streams end with it), then closes every connection.
// Calling it twice, or before Open, is harmless.
func (u *UI) Close(ctx context.Context) error {
	u.mu.Lock()
	s := u.srv
	u.mu.Unlock()
	if s == nil {
		return nil
	}
	return s.srv.Close(ctx)
}
