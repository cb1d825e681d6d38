package minion

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"

	"github.com/overlordhq/overlord/certs"
)

// HandlerForTest returns the handler an open server serves, for tests
// that send it requests without TLS: a request without a TLS state comes
// from the overlord identity "tester", as if over TLS.
func (s *Server) HandlerForTest() (http.Handler, error) {
	h, err := s.handler()
	if err != nil {
		return nil, err
	}
	tester := &x509.Certificate{Subject: pkix.Name{CommonName: "tester", OrganizationalUnit: []string{string(certs.RoleOverlord)}}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{tester}}
		}
		h.ServeHTTP(w, r)
	}), nil
}
