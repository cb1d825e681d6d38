package rpc

// SetMaxResponse sets the most a client reads of an answer, so that tests
// need not send hundreds of MiB.
func SetMaxResponse(c *Client, n int64) { c.maxResponse = n }

// EncodeResultWithin is EncodeResult with another limit.
var EncodeResultWithin = encodeResult

// PeakConns is the most connections to minions c (a pool's client) held
// open at once.
func PeakConns(c *Client) int {
	c.conns.mu.Lock()
	defer c.conns.mu.Unlock()
	return c.conns.peak
}
