// Package miniontest starts fleets of in-process minions for tests and
// benchmarks, in the way net/http/httptest starts HTTP servers.
//
// A fleet is real in everything but the process boundary: a CA made with
// overlord.InitCA in a temporary state directory, each minion enrolled
// with AddMinion (a certificate naming it, its address in overlord.db),
// and each served by minion.Server over mutual TLS on its own loopback
// port, with a state directory of its own (its access list, audit log
// and job store). Calls made with the fleet's Overlord take the product's own path:
// target resolution, fan-out, TLS, JSON-RPC and the job record.
//
//	f := miniontest.Start(t, miniontest.Config{Minions: 3})
//	p, err := f.Overlord.Prepare(overlord.CallSpec{Target: "*", Module: "test", Method: "ping"})
//	...
//	job, err := f.Overlord.Call(ctx, p, nil)
//
// The fleet is stopped and its state directory removed when the test ends
// (tb.Cleanup); Close stops it sooner.
package miniontest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/minion"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/overlord"
)

// DefaultPrefix starts the name of every minion of a fleet unless
// Config.Prefix says otherwise.
const DefaultPrefix = "m"

// closeTimeout bounds how long Close lets calls in flight finish.
const closeTimeout = 5 * time.Second

// Config says what fleet to start.
type Config struct {
	// Minions is how many minions to start (at least one).
	Minions int
	// Prefix starts each minion's name; the rest is its index, zero-padded
	// to four digits or more ("m0000", "m0001", ...), so that a glob such
	// as "m00*" picks the first hundred. DefaultPrefix if empty.
	Prefix string
	// KeyType is the type of every key made; certs.ECDSA if empty.
	KeyType certs.KeyType
	// Registry holds the modules the minions serve; the built-in modules
	// if nil.
	Registry *modules.Registry
	// Logger is given to the overlord and to every minion; logs are
	// discarded if nil.
	Logger *slog.Logger
}

// Fleet is a running set of in-process minions and the overlord that
// enrolled them.
type Fleet struct {
	// Overlord has the fleet's state directory: its CA, its identity and
	// overlord.db with every minion registered.
	Overlord *overlord.Overlord
	// Dir is the overlord's state directory.
	Dir string
	// Names are the minions' names, in the order of Minions.
	Names []string
	// Minions are the servers, open. A test may close one to make that
	// minion unreachable.
	Minions []*minion.Server
	// StateDirs are the minions' state directories, in the order of
	// Minions (under Dir/minions).
	StateDirs []string

	closeOnce sync.Once
	closeErr  error
}

// Start starts a fleet and registers its Close with tb.Cleanup. It fails
// the test (tb.Fatal) if the fleet cannot be started, including when the
// process may not open enough files for it (see CheckFileLimit).
func Start(tb testing.TB, cfg Config) *Fleet {
	tb.Helper()
	dir := tb.TempDir()
	f, err := New(dir, cfg)
	if err != nil {
		tb.Fatalf("miniontest: %v", err)
	}
	tb.Cleanup(func() {
		if err := f.Close(); err != nil {
			tb.Errorf("miniontest: close fleet: %v", err)
		}
	})
	return f
}

// New starts a fleet with its state in dir, which must be empty or not
// exist. Each minion's bundle is written to dir/bundles, and its state
// directory is dir/minions/NAME. The caller must
// Close the fleet; removing dir is the caller's job. Most tests want
// Start instead.
func New(dir string, cfg Config) (_ *Fleet, err error) {
	if cfg.Minions < 1 {
		return nil, fmt.Errorf("a fleet needs at least one minion, not %d", cfg.Minions)
	}
	if err := CheckFileLimit(cfg.Minions); err != nil {
		return nil, err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.KeyType == "" {
		cfg.KeyType = certs.ECDSA
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	o := overlord.New(dir, "", 0, cfg.Logger)
	if _, err := o.InitCA("overlord-test", cfg.KeyType); err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	f := &Fleet{Overlord: o, Dir: dir}
	defer func() {
		if err != nil {
			err = errors.Join(err, f.Close())
		}
	}()
	bundles := filepath.Join(dir, "bundles")
	digits := max(4, len(fmt.Sprint(cfg.Minions-1)))
	for i := range cfg.Minions {
		name := fmt.Sprintf("%s%0*d", cfg.Prefix, digits, i)
		stateDir := filepath.Join(dir, "minions", name)
		srv, err := startMinion(o, name, filepath.Join(bundles, name+".pem"), stateDir, cfg)
		if err != nil {
			return nil, fmt.Errorf("minion %s: %w", name, err)
		}
		f.Names = append(f.Names, name)
		f.Minions = append(f.Minions, srv)
		f.StateDirs = append(f.StateDirs, stateDir)
	}
	return f, nil
}

// startMinion listens on a free loopback port, enrols the minion at that
// address and serves it there, with its state in stateDir.
func startMinion(o *overlord.Overlord, name, bundle, stateDir string, cfg Config) (*minion.Server, error) {
	ln, err := Listen()
	if err != nil {
		return nil, err
	}
	srv, err := func() (*minion.Server, error) {
		if _, err := o.AddMinion(name, ln.Addr().String(), bundle, cfg.KeyType); err != nil {
			return nil, err
		}
		b, err := certs.ReadBundle(bundle)
		if err != nil {
			return nil, err
		}
		return open(minion.Config{StateDir: stateDir, Bundle: b, Listener: ln, Registry: cfg.Registry, Logger: cfg.Logger})
	}()
	if err != nil {
		ln.Close()
		return nil, err
	}
	return srv, nil
}

// Serve opens one minion server with cfg, as `minion serve` would, and
// closes it when the test ends. Left empty, cfg.StateDir is a new
// temporary directory, cfg.Listener a free loopback port (Addr tells
// it), and cfg.RunnerCommand one that fails (async jobs run nothing; give
// one to run them). Use it for a minion whose identity a test makes
// itself; Start makes whole fleets.
func Serve(tb testing.TB, cfg minion.Config) *minion.Server {
	tb.Helper()
	if cfg.StateDir == "" {
		cfg.StateDir = tb.TempDir()
	}
	if cfg.Listener == nil {
		ln, err := Listen()
		if err != nil {
			tb.Fatalf("miniontest: %v", err)
		}
		cfg.Listener = ln
	}
	srv, err := open(cfg)
	if err != nil {
		cfg.Listener.Close()
		tb.Fatalf("miniontest: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			tb.Errorf("miniontest: close minion %s: %v", srv.Name(), err)
		}
	})
	return srv
}

// Listen listens on a free loopback port, for Config.Listener: a test
// that must know a minion's address before it has its identity (to
// register it) listens first.
func Listen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// open makes cfg.StateDir (mode 0700) and opens a server with cfg; the
// listener is the caller's to close if it fails.
func open(cfg minion.Config) (*minion.Server, error) {
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	if len(cfg.RunnerCommand) == 0 {
		// A test binary is no runner: started as one, it would run the
		// tests again.
		cfg.RunnerCommand = []string{"false"}
	}
	srv, err := minion.New(cfg)
	if err != nil {
		return nil, err
	}
	return srv, srv.Open(context.Background())
}

// Close stops every minion, letting calls in flight finish for a few
// seconds. Calling it twice is harmless.
func (f *Fleet) Close() error {
	f.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		errs := make([]error, len(f.Minions))
		var wg sync.WaitGroup
		for i, srv := range f.Minions {
			wg.Go(func() {
				if err := srv.Close(ctx); err != nil {
					errs[i] = fmt.Errorf("minion %s: %w", srv.Name(), err)
				}
			})
		}
		wg.Wait()
		f.closeErr = errors.Join(errs...)
	})
	return f.closeErr
}
