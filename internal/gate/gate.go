// Package gate admits the TLS connections of a server, so that clients
// without a certificate cannot crowd out those with one.
//
// A Listener accepts without ever blocking on anything but the socket,
// and does each TLS handshake in a goroutine of its own, under a short
// deadline. A connection counts as open, and comes out of Accept, only
// once its handshake is complete; until then it is pending. The two have
// separate budgets:
//
//   - pending connections are bounded per source address (an IPv4
//     address, an IPv6 /64) and in all. At a bound, the newest is kept and
//     the oldest pending one goes: first one that has not yet sent a
//     whole ClientHello (the cheapest thing for an attacker to hold),
//     else the oldest of the rest. A legitimate client finishes its
//     handshake in a few round trips, so only a client holding
//     connections open for nothing is closed.
//   - open connections are bounded in all (Limits.MaxConns). At the bound,
//     a new one closes the connection idle longest: a keep-alive
//     connection between requests, or one that has sent nothing in the
//     second since its handshake. A connection the server has started to
//     read a request from is never closed to make room; if every one is
//     busy, the new one is closed instead.
//
// Serve runs an http.Server on a Listener until Close; it tells the
// Listener which connections are idle through http.Server.ConnState.
package gate

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults of Limits.
const (
	// DefaultHandshakeTimeout is the time a client has, from the TCP
	// connection's acceptance, to finish its TLS handshake.
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultMaxPending bounds the connections in their handshake.
	DefaultMaxPending = 1024
	// DefaultMaxPendingPerSource bounds those of one source address.
	DefaultMaxPendingPerSource = 256
	// DefaultMaxConns bounds the connections past their handshake.
	DefaultMaxConns = 1024
)

// Limits bounds the connections a Listener holds. A zero field takes its
// default.
type Limits struct {
	// HandshakeTimeout bounds the time from accepting a connection to the
	// end of its TLS handshake.
	HandshakeTimeout time.Duration
	// MaxPending bounds the connections still in their handshake, from
	// all sources.
	MaxPending int
	// MaxPendingPerSource bounds the connections still in their handshake
	// from one source: an IPv4 address, or an IPv6 /64 (what one host, or
	// one attacker, usually has).
	MaxPendingPerSource int
	// MaxConns bounds the connections past their handshake.
	MaxConns int
}

// WithDefaults returns l with its zero fields set to the defaults, and
// MaxPendingPerSource at most MaxPending.
func (l Limits) WithDefaults() Limits {
	if l.HandshakeTimeout <= 0 {
		l.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if l.MaxPending <= 0 {
		l.MaxPending = DefaultMaxPending
	}
	if l.MaxPendingPerSource <= 0 {
		l.MaxPendingPerSource = DefaultMaxPendingPerSource
	}
	l.MaxPendingPerSource = min(l.MaxPendingPerSource, l.MaxPending)
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
	return l
}

// Fit returns l (with defaults) shrunk in proportion, if need be, so that
// its connections and reserve other open files fit in files, the
// process's limit of open files; ok is false if it had to shrink.
func (l Limits) Fit(files, reserve int) (fitted Limits, ok bool) {
	l = l.WithDefaults()
	room := files - reserve
	if l.MaxPending+l.MaxConns <= room {
		return l, true
	}
	room = max(room, 4)
	total := l.MaxPending + l.MaxConns
	l.MaxPending = max(1, l.MaxPending*room/total)
	l.MaxConns = max(1, l.MaxConns*room/total)
	l.MaxPendingPerSource = max(1, min(l.MaxPendingPerSource, l.MaxPending))
	return l, false
}

// Stats counts what a Listener did.
type Stats struct {
	Pending int // connections in their handshake now
	Hello   int // of those, the ones that have sent a ClientHello
	Open    int // connections past their handshake, not yet closed
	Idle    int // of those, the ones with no request being read or served
	// Since the start:
	Accepted       int64 // TCP connections accepted
	Handshakes     int64 // handshakes completed
	Failed         int64 // handshakes failed (bad certificate, bad client, timeout)
	TimedOut       int64 // of Failed, those past the handshake timeout
	EvictedPending int64 // pending connections closed to make room
	EvictedIdle    int64 // idle open connections closed to make room
	Refused        int64 // completed handshakes closed for want of room
}

// Connection states.
const (
	stSilent = iota // pending, no whole ClientHello yet
	stHello         // pending, ClientHello received
	stIdle          // open, no request being read
	stBusy          // open, a request being read or served
	stHijack        // open, taken over from the HTTP server
	stGone          // closed or evicted
)

// A Listener is a net.Listener whose Accept returns *tls.Conn whose
// handshake is complete. Make one with NewListener; close it with Close.
type Listener struct {
	ln     net.Listener
	tls    *tls.Config
	lim    Limits
	logger *slog.Logger
	now    func() time.Time

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	ready  chan *tls.Conn
	done   chan struct{}  // closed when Accept returns no more
	loop   sync.WaitGroup // the accept loop
	hs     sync.WaitGroup // the handshakes' goroutines
	once   sync.Once      // Close
	doneMu sync.Once      // closing done
	err    error          // why Accept stopped; set before done is closed

	stopOnce sync.Once
	stopped  atomic.Bool // the accept loop was told to stop
	stopErr  error       // from closing ln

	mu       sync.Mutex
	silent   list.List // pending *conn without a ClientHello, oldest first
	hello    list.List // pending *conn with one, oldest first
	sources  map[string]*source
	idle     list.List // open idle *conn, idle longest first
	open     int
	stats    Stats
	lastWarn time.Time
}

// source is the pending connections of one source address.
type source struct {
	key    string
	silent list.List
	hello  list.List
}

func (s *source) n() int { return s.silent.Len() + s.hello.Len() }

// conn is an accepted TCP connection: it tells its Listener when the
// server reads from it, and releases its place when closed.
type conn struct {
	net.Conn
	l     *Listener
	src   *source
	state int
	// elem is the connection's place in the Listener's silent, hello or
	// idle list; selem in its source's silent or hello list.
	elem, selem *list.Element
	// fresh is set from the handshake to the first request: that may
	// have come with the handshake's last bytes, and be read from TLS's
	// buffer without a Read here. idleSince is when it last became idle.
	fresh     bool
	idleSince time.Time
	closeOnce sync.Once
}

// freshGrace is how long a connection that has had no request yet is
// safe from eviction after its handshake: time for the server to read a
// request that came with the handshake.
const freshGrace = time.Second

// Read marks the connection busy when data comes after the handshake,
// so that it is not evicted with a request half read.
func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.l.reading(c) {
		return 0, net.ErrClosed
	}
	return n, err
}

// Close releases the connection's place and closes it.
func (c *conn) Close() error {
	c.l.release(c)
	var err error
	c.closeOnce.Do(func() { err = c.Conn.Close() })
	return err
}

// reset closes the connection with a TCP reset, leaving no TIME_WAIT
// behind: for connections closed to make room.
func (c *conn) reset() {
	if tc, ok := c.Conn.(interface{ SetLinger(int) error }); ok {
		_ = tc.SetLinger(0)
	}
	c.closeOnce.Do(func() { _ = c.Conn.Close() })
}

// NewListener serves TLS with cfg on ln, within lim, from now until Close;
// it takes ln over. cfg's GetConfigForClient, if any, is still called.
// The logger (nil: none) gets a warning, at most once a minute, while
// connections are closed to make room.
func NewListener(ln net.Listener, cfg *tls.Config, lim Limits, logger *slog.Logger) *Listener {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Listener{ln: ln, lim: lim.WithDefaults(), logger: logger, now: time.Now,
		ctx: ctx, cancel: cancel, ready: make(chan *tls.Conn), done: make(chan struct{}),
		sources: map[string]*source{}}
	l.tls = cfg.Clone()
	next := cfg.GetConfigForClient
	l.tls.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
		if c, ok := hi.Conn.(*conn); ok && c.l == l {
			l.helloed(c)
		}
		if next != nil {
			return next(hi)
		}
		return nil, nil
	}
	l.loop.Add(1)
	go l.run()
	return l
}

// Limits returns the limits in force.
func (l *Listener) Limits() Limits { return l.lim }

// Accept returns the next connection whose handshake is complete, a
// *tls.Conn.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

// Addr returns the address listened on.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting and closes the connections still in their
// handshake; those Accept returned are the caller's. It waits for the
// Listener's goroutines.
func (l *Listener) Close() error {
	l.once.Do(func() {
		l.stop()
		l.cancel()
		l.mu.Lock()
		var pending []*conn
		for _, q := range []*list.List{&l.silent, &l.hello} {
			for e := q.Front(); e != nil; e = e.Next() {
				pending = append(pending, e.Value.(*conn))
			}
		}
		l.mu.Unlock()
		for _, c := range pending {
			c.Close()
		}
		l.hs.Wait()
		l.finish(net.ErrClosed)
	})
	return l.stopErr
}

// stop closes the listening socket and waits for the accept loop.
func (l *Listener) stop() {
	l.stopOnce.Do(func() {
		l.stopped.Store(true)
		l.stopErr = l.ln.Close()
		l.loop.Wait()
	})
}

// finish makes Accept return err from now on.
func (l *Listener) finish(err error) {
	l.doneMu.Do(func() {
		l.err = err
		close(l.done)
	})
}

// Stats returns what the Listener has done so far.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.Pending = l.silent.Len() + l.hello.Len()
	s.Hello = l.hello.Len()
	s.Open = l.open
	s.Idle = l.idle.Len()
	return s
}

// run accepts until the listener is closed; it backs off on errors
// (such as running out of file descriptors, when it also closes the
// oldest pending connection).
func (l *Listener) run() {
	defer l.loop.Done()
	var delay time.Duration
	peek := make([]byte, maxHello)
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			if l.stopped.Load() {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				l.finish(err)
				return
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				l.evictPending()
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.logger.Warn("accept failed; retrying", "err", err, "in", delay)
			select {
			case <-time.After(delay):
			case <-l.ctx.Done():
			}
			continue
		}
		delay = 0
		c := &conn{Conn: raw, l: l}
		victims := l.admit(c, hasHello(raw, peek))
		for _, v := range victims {
			v.reset()
		}
		l.hs.Add(1)
		go l.handshake(c)
	}
}

// sourceKey is the source address a connection's pending limit counts
// against.
func sourceKey(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if ip4 := ta.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	return ta.IP.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// admit counts c as pending (with a ClientHello already if hello) and
// returns the connections to close to make room for it.
func (l *Listener) admit(c *conn, hello bool) []*conn {
	key := sourceKey(c.RemoteAddr())
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats.Accepted++
	src := l.sources[key]
	if src == nil {
		src = &source{key: key}
		l.sources[key] = src
	}
	var victims []*conn
	if src.n() >= l.lim.MaxPendingPerSource {
		victims = append(victims, l.evictLocked(&src.silent, &src.hello))
	}
	if l.silent.Len()+l.hello.Len() >= l.lim.MaxPending {
		victims = append(victims, l.evictLocked(&l.silent, &l.hello))
	}
	c.src = src
	l.sources[key] = src // again: an eviction may have emptied it
	if hello {
		c.state = stHello
		c.elem = l.hello.PushBack(c)
		c.selem = src.hello.PushBack(c)
	} else {
		c.state = stSilent
		c.elem = l.silent.PushBack(c)
		c.selem = src.silent.PushBack(c)
	}
	if len(victims) > 0 {
		l.warnLocked()
	}
	return victims
}

// evictLocked takes the oldest connection off silent, else off hello
// (a source's lists or the Listener's), and returns it.
func (l *Listener) evictLocked(silent, hello *list.List) *conn {
	q := silent
	if q.Len() == 0 {
		q = hello
	}
	c := q.Front().Value.(*conn)
	l.unpendLocked(c)
	c.state = stGone
	l.stats.EvictedPending++
	return c
}

// evictPending closes the oldest pending connection, if any.
func (l *Listener) evictPending() {
	l.mu.Lock()
	var c *conn
	if l.silent.Len()+l.hello.Len() > 0 {
		c = l.evictLocked(&l.silent, &l.hello)
	}
	l.mu.Unlock()
	if c != nil {
		c.reset()
	}
}

// unpendLocked takes a pending connection off the pending lists.
func (l *Listener) unpendLocked(c *conn) {
	if c.state == stSilent {
		l.silent.Remove(c.elem)
		c.src.silent.Remove(c.selem)
	} else {
		l.hello.Remove(c.elem)
		c.src.hello.Remove(c.selem)
	}
	c.elem, c.selem = nil, nil
	if c.src.n() == 0 {
		delete(l.sources, c.src.key)
	}
}

// helloed moves c to the pending connections that sent a ClientHello.
func (l *Listener) helloed(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.state != stSilent {
		return
	}
	l.silent.Remove(c.elem)
	c.src.silent.Remove(c.selem)
	c.state = stHello
	c.elem = l.hello.PushBack(c)
	c.selem = c.src.hello.PushBack(c)
}

// handshake does c's TLS handshake and hands it to Accept.
func (l *Listener) handshake(c *conn) {
	defer l.hs.Done()
	_ = c.SetDeadline(l.now().Add(l.lim.HandshakeTimeout))
	tc := tls.Server(c, l.tls)
	if err := tc.HandshakeContext(l.ctx); err != nil {
		l.mu.Lock()
		evicted := c.state == stGone
		var ne net.Error
		timedOut := errors.As(err, &ne) && ne.Timeout()
		if !evicted {
			l.stats.Failed++
			if timedOut {
				l.stats.TimedOut++
			}
		}
		l.mu.Unlock()
		if timedOut || evicted {
			l.release(c)
			c.reset()
			return
		}
		if l.ctx.Err() == nil {
			l.logger.Debug("TLS handshake failed", "from", c.RemoteAddr().String(), "err", err)
		}
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	victim, ok := l.opened(c)
	if victim != nil {
		victim.reset()
	}
	if !ok {
		c.reset()
		return
	}
	select {
	case l.ready <- tc:
	case <-l.ctx.Done():
		c.Close()
	}
}

// opened counts a pending connection whose handshake is complete as open,
// evicting the connection idle longest if there is no room; ok is false
// if there is none, all being busy (or c was evicted meanwhile).
func (l *Listener) opened(c *conn) (victim *conn, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.state == stGone {
		return nil, false
	}
	l.unpendLocked(c)
	l.stats.Handshakes++
	now := l.now()
	if l.open >= l.lim.MaxConns {
		for e := l.idle.Front(); e != nil; e = e.Next() {
			if v := e.Value.(*conn); !v.fresh || now.Sub(v.idleSince) >= freshGrace {
				victim = v
				break
			}
		}
		if victim == nil {
			c.state = stGone
			l.stats.Refused++
			l.warnLocked()
			return nil, false
		}
		l.closeLocked(victim)
		l.stats.EvictedIdle++
		l.warnLocked()
	}
	l.open++
	c.state = stIdle
	c.fresh, c.idleSince = true, now
	c.elem = l.idle.PushBack(c)
	return victim, true
}

// closeLocked forgets an open connection.
func (l *Listener) closeLocked(c *conn) {
	if c.state == stIdle {
		l.idle.Remove(c.elem)
		c.elem = nil
	}
	l.open--
	c.state = stGone
}

// release forgets c, whatever its state.
func (l *Listener) release(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch c.state {
	case stSilent, stHello:
		l.unpendLocked(c)
		c.state = stGone
	case stIdle, stBusy, stHijack:
		l.closeLocked(c)
	}
}

// reading notes that the server has read from c; false if c is gone, its
// data to be dropped.
func (l *Listener) reading(c *conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch c.state {
	case stGone:
		return false
	case stIdle:
		l.idle.Remove(c.elem)
		c.elem = nil
		c.state = stBusy
		c.fresh = false
	}
	return true
}

// ConnState is for http.Server.ConnState: it tells the Listener which of
// its connections are idle. Serve sets it.
func (l *Listener) ConnState(nc net.Conn, st http.ConnState) {
	tc, ok := nc.(*tls.Conn)
	if !ok {
		return
	}
	c, ok := tc.NetConn().(*conn)
	if !ok || c.l != l {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case c.state == stGone || c.state == stSilent || c.state == stHello:
	case st == http.StateIdle && c.state == stBusy:
		c.state = stIdle
		c.fresh, c.idleSince = false, l.now()
		c.elem = l.idle.PushBack(c)
	case st == http.StateIdle && c.state == stIdle:
		// A request came and went within TLS's buffer.
		c.fresh = false
	case st == http.StateActive && c.state == stIdle:
		l.idle.Remove(c.elem)
		c.elem = nil
		c.state = stBusy
		c.fresh = false
	case st == http.StateHijacked:
		if c.state == stIdle {
			l.idle.Remove(c.elem)
			c.elem = nil
		}
		c.state = stHijack
	case st == http.StateClosed:
		l.closeLocked(c)
	}
}

// warnLocked logs, at most once a minute, that connections are being
// closed to make room.
func (l *Listener) warnLocked() {
	now := l.now()
	if now.Sub(l.lastWarn) < time.Minute {
		return
	}
	l.lastWarn = now
	s := l.stats
	l.logger.Warn("too many connections: closing the oldest pending or idle ones to make room",
		"pending", l.silent.Len()+l.hello.Len(), "open", l.open,
		"max_pending", l.lim.MaxPending, "max_pending_per_source", l.lim.MaxPendingPerSource, "max_conns", l.lim.MaxConns,
		"evicted_pending", s.EvictedPending, "evicted_idle", s.EvictedIdle, "refused", s.Refused)
}
