package rpc

import (
	"crypto/tls"
	"sync"
)

// connCounter counts the open connections of a client with MaxPerMinion
// (the overlord service's pool) to each minion, for its metrics.
type connCounter struct {
	mu   sync.Mutex
	open map[string]int // by minion name
}

// opened counts a connection to minion and returns it with its Close
// counting it out.
func (n *connCounter) opened(minion string, c *tls.Conn) *countedConn {
	n.mu.Lock()
	n.open[minion]++
	n.mu.Unlock()
	return &countedConn{Conn: c, n: n, minion: minion}
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
		defer c.n.mu.Unlock()
		if c.n.open[c.minion]--; c.n.open[c.minion] <= 0 {
			delete(c.n.open, c.minion)
		}
	})
	return err
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
