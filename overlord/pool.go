package overlord

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/rpc"
)

// The service's pool of connections to minions.
const (
	// PoolIdleTimeout closes a pooled connection unused for this long
	// (below the minion's own idle limit, 2 minutes, so the overlord is
	// the one to close it, never a call in its way).
	PoolIdleTimeout = 90 * time.Second
	// PoolPerMinion bounds the calls the service has in flight to one
	// minion, below the minion's limit per identity
	// (minion.MaxRequestsPerIdentity, 64): more wait for a place rather
	// than be refused.
	PoolPerMinion = 48
	// registryRefresh bounds how often a name the pool does not know, or
	// a failed call, makes it read the registry again.
	registryRefresh = time.Second
)

// pool is the overlord service's warm fleet: one rpc.Client for every
// call the service makes or forwards, keeping its mutually-authenticated
// HTTP/1.1 connections to each minion it has called open (keep-alive) for
// the next call and job: one per minion for calls made one at a time, one
// more while the service's drivers long-poll the minion (statusHub), more
// only for bursts. (HTTP/2, one connection for everything, measured ~25%
// slower on a 500-minion fan-out: the minions' HTTP/2 server hands each
// request between more goroutines; docs/performance.md.) It reaches
// minions by the registry's addresses and pins their certificates by its
// fingerprints, as the CLI does; it reads the registry again when asked
// for a name it does not know, or when a call fails (a minion added again
// with a new address or certificate).
type pool struct {
	o        *Overlord
	identity string // the identity the pool calls as (Overlord.IdentityFile)
	client   *rpc.Client
	// minions are the minions the pool knows, by name: updated in place
	// (learn), so that a forwarded request naming one minion costs what
	// one minion does, not a copy of thousands.
	minionsMu sync.RWMutex
	minions   map[string]jobs.Minion
	gateways  atomic.Pointer[map[string]jobs.Gateway] // the registry's, by name
	crl       atomic.Pointer[certs.CRL]
	pusher    atomic.Pointer[crlPusher] // hands the CRL to minions that hold an older one
	hub       *statusHub                // the status polls of the service\'s drivers
	reach     reachBook                 // whether each minion answered its last call
	ca        *x509.Certificate
	// static: a gateway's pool, which has no registry: it knows the
	// minions its callers name (learn), and nothing else.
	static bool

	mu       sync.Mutex // serialises reloads
	loadedAt time.Time
}

// newPool loads the identity and the registry and makes the pool's client.
func (o *Overlord) newPool() (*pool, error) {
	id, err := o.Identity()
	if err != nil {
		return nil, err
	}
	tlsID, err := id.TLS()
	if err != nil {
		return nil, err
	}
	p := &pool{o: o, identity: o.IdentityFile, ca: id.CA}
	noGateways := map[string]jobs.Gateway{}
	p.gateways.Store(&noGateways)
	if err := p.reload(); err != nil {
		return nil, err
	}
	if err := certs.CheckRevoked(p.crl.Load(), id.Cert); err != nil {
		return nil, err
	}
	pinned := func(name string) (string, bool) { m, ok := p.minion(name); return m.Fingerprint, ok }
	p.client = rpc.NewClient(rpc.ClientConfig{
		TLS:          certs.Pin(certs.RefuseRevoked(certs.ClientConfig(tlsID, id.Pool()), p.crl.Load), pinned),
		Resolve:      func(name string) (string, bool) { m, ok := p.minion(name); return m.Addr, ok },
		IdleTimeout:  PoolIdleTimeout,
		MaxPerMinion: PoolPerMinion,
		MaxConns:     poolMaxConns(),
		Observe:      p.reach.observe,
		View:         func(name string) (string, string, bool) { m, ok := p.minion(name); return m.Addr, m.Fingerprint, ok },
		Route:        p.route,
		GatewayTLS:   certs.RefuseRevoked(certs.GatewayClientConfig(tlsID, id.Pool()), p.crl.Load),
		AfterCall: func(ctx context.Context, c *rpc.Client, minion, method string, h http.Header) {
			if pu := p.pusher.Load(); pu != nil {
				pu.afterCall(ctx, c, minion, method, h)
			}
		},
		AfterGateway: func(ctx context.Context, c *rpc.Client, gw rpc.Gateway, h http.Header) {
			if pu := p.pusher.Load(); pu != nil {
				pu.afterGateway(ctx, c, gw, h)
			}
		},
	})
	p.hub = newStatusHub(p.client)
	return p, nil
}

// route returns the gateways of a minion behind gateways, as the pool last
// learnt them (a caller's view, else the registry).
func (p *pool) route(name string) []rpc.Gateway {
	m, ok := p.minion(name)
	if !ok || len(m.Via) == 0 {
		return nil
	}
	gws := *p.gateways.Load()
	for _, n := range m.Via {
		if _, ok := gws[n]; !ok {
			// Added since the pool read the registry.
			_ = p.refresh()
			gws = *p.gateways.Load()
			break
		}
	}
	out := make([]rpc.Gateway, len(m.Via))
	for i, n := range m.Via {
		g := gws[n]
		out[i] = rpc.Gateway{Name: n, Addr: g.Addr, Fingerprint: g.Fingerprint}
	}
	return out
}

// minion returns a registered minion as the pool last read it.
func (p *pool) minion(name string) (jobs.Minion, bool) {
	p.minionsMu.RLock()
	m, ok := p.minions[name]
	p.minionsMu.RUnlock()
	return m, ok
}

// lookup returns a registered minion, reading the registry again if the
// pool does not know the name.
func (p *pool) lookup(name string) (jobs.Minion, bool) {
	if m, ok := p.minion(name); ok {
		return m, true
	}
	if err := p.refresh(); err != nil {
		p.o.Logger.Warn("could not read the registry", "err", err)
	}
	return p.minion(name)
}

// changed reads the registry again (at most every registryRefresh) and
// reports whether name's address or certificate changed: a failed call
// is then worth another try.
func (p *pool) changed(name string) bool {
	before, _ := p.minion(name)
	if err := p.refresh(); err != nil {
		return false
	}
	after, ok := p.minion(name)
	return ok && (after.Addr != before.Addr || after.Fingerprint != before.Fingerprint)
}

// refresh reads the registry unless it was read within registryRefresh.
func (p *pool) refresh() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.loadedAt) < registryRefresh {
		return nil
	}
	return p.reloadLocked()
}

func (p *pool) reload() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reloadLocked()
}

func (p *pool) reloadLocked() error {
	if p.static {
		return nil
	}
	inv, err := p.o.Store.Inventory()
	if err != nil {
		return err
	}
	p.learn(inv.Minions, true)
	gws := make(map[string]jobs.Gateway, len(inv.Gateways))
	for _, g := range inv.Gateways {
		gws[g.Name] = g
	}
	p.gateways.Store(&gws)
	crl, err := p.o.CRL(p.ca)
	if err != nil && !errors.Is(err, jobs.ErrNoStore) {
		p.o.Logger.Warn("the revocation list in overlord.db is unusable; not checking it", "err", err)
	}
	if crl != nil {
		if old := p.crl.Load(); old == nil || old.Number != crl.Number {
			p.pusher.Store(newCRLPusher(crl, p.o.Logger))
		}
		p.crl.Store(crl)
	}
	p.loadedAt = time.Now()
	return nil
}

// learn takes minions as the registry now has them (a caller read it
// moments ago); with all, they are the whole registry and the names not
// among them are forgotten. A minion whose address or certificate changed
// loses its idle connections: the next call dials it again and checks
// the new pin.
func (p *pool) learn(minions []jobs.Minion, all bool) {
	p.minionsMu.Lock()
	old, next := p.minions, p.minions
	if all || next == nil {
		next = make(map[string]jobs.Minion, len(minions))
	}
	moved := false
	for _, m := range minions {
		if was, ok := old[m.Name]; ok && (was.Addr != m.Addr || was.Fingerprint != m.Fingerprint) {
			moved = true
		}
		next[m.Name] = m
	}
	p.minions = next
	p.minionsMu.Unlock()
	if moved && p.client != nil {
		p.client.Close()
	}
}
