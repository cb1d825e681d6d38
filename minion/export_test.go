package minion

import "net/http"

// HandlerForTest returns the handler an open server serves, for tests
// that send it requests without TLS.
func (s *Server) HandlerForTest() (http.Handler, error) { return s.handler() }
