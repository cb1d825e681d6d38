package rpc

// SetMaxResponse sets the most a client reads of an answer, so that tests
// need not send hundreds of MiB.
func SetMaxResponse(c *Client, n int64) { c.maxResponse = n }

// EncodeResultWithin is EncodeResult with another limit.
var EncodeResultWithin = encodeResult
