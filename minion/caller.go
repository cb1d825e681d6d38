package minion

import (
	"container/list"
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// Who is calling.
//
// Every request comes over mutual TLS with a client certificate of the
// minion's CA, of the overlord role or the gateway role
// (certs.ServerConfig). An overlord identity calls for itself. A gateway
// calls on behalf of the overlord identity that sent it the call: it
// names that identity's certificate in rpc.OnBehalfOfHeader, and the
// minion checks the certificate as it would check that identity's own
// connection (of the CA, valid now, overlord role, client
// authentication, not revoked). The request's caller is then that
// identity: its access list applies, its async jobs and held calls are
// keyed by its name (a submit retried through another gateway finds the
// same job), and the audit log records it with the gateway (via). An
// overlord identity may not send the header; a gateway must.
//
// Server.identify decides this once per request, before anything else
// looks at who is calling, and puts the answer in the request's context,
// where caller and callerOf find it.

// who is a request's effective caller.
type who struct {
	// identity is the overlord identity the call is for: the one whose
	// access list, jobs and limits apply. Never empty for a request the
	// minion serves.
	identity string
	// via is the gateway that passed the call on, "" for a direct call.
	via string
}

type whoKey struct{}

// callerOf returns the effective caller of r, as Server.identify found
// it; the zero who for a request that did not come through it.
func callerOf(r *http.Request) who {
	w, _ := r.Context().Value(whoKey{}).(who)
	return w
}

// caller returns the identity r is for (callerOf(r).identity).
func caller(r *http.Request) string { return callerOf(r).identity }

// withCaller returns r with w as its effective caller.
func withCaller(r *http.Request, w who) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), whoKey{}, w))
}

// Bounds of the identities a minion keeps verified.
const (
	// maxOnBehalfOf bounds the header's value: the base64 of a
	// certificate of at most certs.MaxIdentityBytes.
	maxOnBehalfOf = (certs.MaxIdentityBytes + 2) / 3 * 4
	// identityCacheSize is how many verified certificates are kept, the
	// least recently used dropped first: more than the identities that
	// call one minion.
	identityCacheSize = 1024
)

// identities decides who a request is from. It keeps the certificates
// gateways named and it verified, by their bytes, so that a gateway's
// calls do not pay a signature check each; their validity dates and the
// revocation list are checked at every request.
type identities struct {
	roots *x509.CertPool
	ca    *x509.Certificate
	rev   *revocation
	now   func() time.Time
	max   int

	mu    sync.Mutex
	cache map[string]*list.Element // header value -> *verified
	lru   *list.List               // most recently used first
}

// verified is a certificate a gateway named, verified at some time.
type verified struct {
	key  string
	cert *x509.Certificate
}

func newIdentities(ca *x509.Certificate, rev *revocation) *identities {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return &identities{roots: roots, ca: ca, rev: rev, now: time.Now, max: identityCacheSize,
		cache: map[string]*list.Element{}, lru: list.New()}
}

// denied returns a refusal (kind denied) saying msg.
func denied(format string, args ...any) error {
	return status.Errorf(status.KindDenied, format, args...)
}

// resolve returns r's effective caller, or the refusal (kind denied) of
// a request that may not be served. With a refusal, the who returned
// holds what is known of the caller, for the audit log: the gateway, and
// the identity it named if that much could be read.
func (ids *identities) resolve(r *http.Request) (who, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return who{}, denied("no client certificate")
	}
	peer := r.TLS.PeerCertificates[0]
	name := peer.Subject.CommonName
	values := r.Header.Values(rpc.OnBehalfOfHeader)
	switch role := certs.RoleOf(peer); role {
	case certs.RoleOverlord:
		if err := certs.CheckName(name); err != nil {
			return who{}, denied("the client certificate's name: %v", err)
		}
		if len(values) > 0 {
			return who{identity: name}, denied("%s is an overlord identity: only gateways may call on behalf of another identity (%s)", name, rpc.OnBehalfOfHeader)
		}
		return who{identity: name}, nil
	case certs.RoleGateway:
		w := who{via: name}
		switch {
		case len(values) == 0 || values[0] == "":
			return w, denied("a gateway must name the identity it calls for: gateway %s sent no %s", name, rpc.OnBehalfOfHeader)
		case len(values) > 1:
			return w, denied("gateway %s named %d identities (%s), not one", name, len(values), rpc.OnBehalfOfHeader)
		}
		cert, err := ids.verify(values[0])
		if err != nil {
			return w, denied("gateway %s may not call on behalf of the certificate in %s: %v", name, rpc.OnBehalfOfHeader, err)
		}
		w.identity = cert.Subject.CommonName
		if err := certs.CheckRevoked(ids.rev.current(), cert); err != nil {
			return w, denied("gateway %s may not call on behalf of %s: %v", name, w.identity, err)
		}
		return w, nil
	default:
		// certs.ServerConfig lets no other role through its handshake.
		return who{}, denied("certificate %q has role %q: only overlord identities and gateways may call", name, role)
	}
}

// verify returns the overlord identity certificate whose standard base64
// is value, if it is one of the CA valid now (certs.VerifyOverlord).
func (ids *identities) verify(value string) (*x509.Certificate, error) {
	now := ids.now()
	ids.mu.Lock()
	e, ok := ids.cache[value]
	if ok {
		ids.lru.MoveToFront(e)
	}
	ids.mu.Unlock()
	if ok {
		cert := e.Value.(*verified).cert
		// Verified before: only its dates, and the CA's, can have
		// changed their answer.
		for _, c := range []*x509.Certificate{cert, ids.ca} {
			if now.Before(c.NotBefore) || now.After(c.NotAfter) {
				return nil, fmt.Errorf("%w: certificate %q is valid from %s to %s, not now (%s)", certs.ErrNotIdentity, c.Subject.CommonName,
					c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
			}
		}
		return cert, nil
	}
	if len(value) > maxOnBehalfOf {
		return nil, fmt.Errorf("%d bytes, more than the %d the base64 of a certificate may have", len(value), maxOnBehalfOf)
	}
	der, err := base64.StdEncoding.Strict().DecodeString(value)
	if err != nil {
		return nil, fmt.Errorf("not the standard base64 of a certificate: %v", err)
	}
	cert, err := certs.VerifyOverlord(der, ids.roots, now)
	if err != nil {
		return nil, err
	}
	ids.remember(value, cert)
	return cert, nil
}

// remember keeps cert, verified, under value, dropping the least
// recently used past the bound.
func (ids *identities) remember(value string, cert *x509.Certificate) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if e, ok := ids.cache[value]; ok { // verified meanwhile by another request
		ids.lru.MoveToFront(e)
		return
	}
	ids.cache[value] = ids.lru.PushFront(&verified{key: value, cert: cert})
	for ids.lru.Len() > ids.max {
		old := ids.lru.Back()
		ids.lru.Remove(old)
		delete(ids.cache, old.Value.(*verified).key)
	}
}

// identify serves next with the request's effective caller in its
// context (callerOf), or refuses the request (HTTP 403, a JSON-RPC error
// of kind denied), logging and auditing the refusal.
func (s *Server) identify(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := s.ids.resolve(r)
		if err != nil {
			s.cfg.Logger.Warn("refused a request", "err", err, "identity", c.identity, "via", c.via, "remote", r.RemoteAddr)
			if aerr := s.audit.record(AuditEntry{RPC: AuditRefused, Identity: c.identity, Via: c.via, Remote: r.RemoteAddr,
				Outcome: string(status.KindDenied), Message: err.Error()}); aerr != nil {
				s.cfg.Logger.Error("audit log: could not record a refused request", "err", aerr, "identity", c.identity, "via", c.via, "remote", r.RemoteAddr)
			}
			writeRPCError(w, http.StatusForbidden, rpc.NewError(err, nil))
			return
		}
		next.ServeHTTP(w, withCaller(r, c))
	})
}
