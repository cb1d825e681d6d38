package rpc

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"time"
)

// connCounter counts the open connections of a client with MaxPerMinion
// (the overlord service's pool) to each minion, for its metrics, and
// bounds them in all (ClientConfig.MaxConns).
type connCounter struct {
	mu    sync.Mutex
	open  map[string]int // by minion name
	total int
	peak  int // the most open at once, for tests
	// keep is how many open connections the client keeps for reuse:
	// past it, a minion without an idle connection is called on one
	// closed after the answer (oneOff). 0: no bound.
	keep int
	// room holds a place for every connection open or being dialled,
	// MaxConns in all; nil: no bound.
	room chan struct{}
	// closeIdle closes the client's idle connections.
	closeIdle func()
}

func newConnCounter(maxConns int, closeIdle func()) *connCounter {
	n := &connCounter{open: map[string]int{}, closeIdle: closeIdle}
	if maxConns > 0 {
		n.room = make(chan struct{}, maxConns)
		n.keep = max(maxConns-maxConns/8, 1)
	}
	return n
}

// reserve takes a place for a connection about to be dialled. With every
// place taken, it waits for one until ctx ends, closing the client's idle
// connections every reserveWait (those kept, when more calls are in
// flight than the places left beyond keep).
func (n *connCounter) reserve(ctx context.Context) error {
	if n.room == nil {
		return nil
	}
	select {
	case n.room <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(reserveWait)
	defer t.Stop()
	for {
		select {
		case n.room <- struct{}{}:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("all %d connections this process may open to minions are in use: %w", cap(n.room), ctx.Err())
		case <-t.C:
			n.closeIdle()
			t.Reset(reserveWait)
		}
	}
}

// reserveWait is how long a dial waits for a place before the idle
// connections are closed to make room.
const reserveWait = 100 * time.Millisecond

// unreserve gives back a place a dial did not use.
func (n *connCounter) unreserve() {
	if n.room != nil {
		<-n.room
	}
}

// opened counts a connection to minion and returns it with its Close
// counting it out (and giving its place back).
func (n *connCounter) opened(minion string, c *tls.Conn) *countedConn {
	n.mu.Lock()
	n.open[minion]++
	n.total++
	n.peak = max(n.peak, n.total)
	n.mu.Unlock()
	return &countedConn{Conn: c, n: n, minion: minion}
}

// oneOff reports whether a call to minion, with others calls in flight
// to it besides, should be made on a connection closed after its answer:
// the client holds keep connections or more, and none of minion's is
// idle, so the call dials one the client cannot keep.
func (n *connCounter) oneOff(minion string, others int) bool {
	if n.keep <= 0 {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.total >= n.keep && n.open[minion] <= others
}

// countedConn is a pooled connection that counts itself out when closed.
type countedConn struct {
	*tls.Conn
	n      *connCounter
	minion string
	once   sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.n.mu.Lock()
		c.n.total--
		if c.n.open[c.minion]--; c.n.open[c.minion] <= 0 {
			delete(c.n.open, c.minion)
		}
		c.n.mu.Unlock()
		c.n.unreserve()
	})
	return err
}

// oneOff reports whether a call to minion, whose place among the calls
// in flight is taken, should ask for its connection to be closed after
// the answer (ClientConfig.MaxConns).
func (c *Client) oneOff(minion string) bool {
	if c.conns == nil || c.conns.keep <= 0 {
		return false
	}
	busy := 1
	if v, ok := c.slots.Load(minion); ok {
		busy = len(v.(chan struct{}))
	}
	return c.conns.oneOff(minion, max(busy-1, 0))
}

// Conns returns how many connections to minions a client with
// MaxPerMinion (the service's pool) holds open, and how many of them are
// idle: those beyond the calls in flight to their minion (a call in
// flight holds one connection, once dialled). Other clients return 0, 0.
func (c *Client) Conns() (open, idle int) {
	if c.conns == nil {
		return 0, 0
	}
	c.conns.mu.Lock()
	defer c.conns.mu.Unlock()
	for minion, n := range c.conns.open {
		busy := 0
		if v, ok := c.slots.Load(minion); ok {
			busy = len(v.(chan struct{}))
		}
		open += n
		idle += max(n-busy, 0)
	}
	return open, idle
}
