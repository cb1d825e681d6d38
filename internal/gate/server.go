package gate

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
)

// Server is an http.Server serving on a Listener in the background:
// Serve, then Close.
type Server struct {
	srv    *http.Server
	ln     net.Listener
	done   chan struct{}
	mu     sync.Mutex
	err    error
	closed sync.Once
}

// Serve serves srv on ln in the background until Close. When ln is a
// *Listener, it chains ln.ConnState to srv.ConnState, so that ln knows
// which connections are idle; srv.TLSConfig is left as it is (ln does the
// handshakes). Any other listener (the overlord service's local socket)
// is served as it is.
func Serve(srv *http.Server, ln net.Listener) *Server {
	if gl, ok := ln.(*Listener); ok {
		prev := srv.ConnState
		srv.ConnState = func(c net.Conn, st http.ConnState) {
			gl.ConnState(c, st)
			if prev != nil {
				prev(c, st)
			}
		}
	}
	s := &Server{srv: srv, ln: ln, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		err := srv.Serve(ln)
		if !errors.Is(err, http.ErrServerClosed) {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
		}
	}()
	return s
}

// Addr returns the address served on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Listener returns the Listener served on, or nil if it is not a
// *Listener.
func (s *Server) Listener() *Listener {
	gl, _ := s.ln.(*Listener)
	return gl
}

// Done is closed when the server has stopped serving.
func (s *Server) Done() <-chan struct{} { return s.done }

// Close stops accepting (connections still in their handshake are
// closed), lets requests in flight finish until ctx is done, then closes
// every connection. It returns ctx's error if requests were cut short,
// else why serving stopped, if not Close. Calling it twice is harmless.
func (s *Server) Close(ctx context.Context) error {
	var err error
	s.closed.Do(func() {
		if err = s.srv.Shutdown(ctx); err != nil {
			s.srv.Close()
		}
		<-s.done
		// Shutdown closes the Listener; make sure of it if Serve had
		// stopped before.
		s.ln.Close()
		s.mu.Lock()
		if s.err != nil {
			err = s.err
		}
		s.mu.Unlock()
	})
	return err
}
