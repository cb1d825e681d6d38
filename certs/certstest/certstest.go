// Package certstest makes certificate authorities and certificates at test
// time, in the way net/http/httptest makes servers: every helper takes a
// testing.TB and fails the test on error, so tests read as a list of the
// identities they need.
//
//	ca := certstest.NewCA(t)
//	web1 := ca.Minion("web1")      // server certificate naming web1
//	op := ca.Overlord("op")        // client certificate with the overlord role
//	gw := ca.Gateway("gw1")        // calls minions on behalf of op
//	srvTLS := certstest.ServerTLS(t, web1)
//	cliTLS := certstest.ClientTLS(t, op)
package certstest

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
)

// CA is a certificate authority made for one test.
type CA struct {
	*certs.Authority
	t       testing.TB
	keyType certs.KeyType
}

// NewCA returns a new ECDSA P-256 CA.
func NewCA(t testing.TB) *CA { return NewCAType(t, certs.ECDSA) }

// NewCAType returns a new CA whose keys, and the keys of the certificates it
// issues, are of type kt.
func NewCAType(t testing.TB, kt certs.KeyType) *CA {
	t.Helper()
	a, err := certs.NewAuthority("test CA", kt)
	if err != nil {
		t.Fatalf("certstest: new CA: %v", err)
	}
	return &CA{Authority: a, t: t, keyType: kt}
}

// Pool returns a pool holding only this CA's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Bundle issues a certificate for name in role and returns it as a bundle
// with its key and this CA's certificate.
func (ca *CA) Bundle(name string, role certs.Role) *certs.Bundle {
	ca.t.Helper()
	cert, key, err := ca.Issue(name, role, ca.keyType)
	if err != nil {
		ca.t.Fatalf("certstest: issue %s certificate for %q: %v", role, name, err)
	}
	return &certs.Bundle{Cert: cert, Key: key, CA: ca.Cert}
}

// Minion issues a minion (server) identity named name.
func (ca *CA) Minion(name string) *certs.Bundle {
	ca.t.Helper()
	return ca.Bundle(name, certs.RoleMinion)
}

// Overlord issues an overlord (client) identity named name.
func (ca *CA) Overlord(name string) *certs.Bundle {
	ca.t.Helper()
	return ca.Bundle(name, certs.RoleOverlord)
}

// Gateway issues a gateway identity named name: server and client
// certificate, calling minions on behalf of overlord identities.
func (ca *CA) Gateway(name string) *certs.Bundle {
	ca.t.Helper()
	return ca.Bundle(name, certs.RoleGateway)
}

// Sign signs a certificate made from tmpl for a new key, for tests that
// need a certificate Issue would never make (a wrong role, a missing SAN,
// an expired certificate). Serial number, validity and a basic-constraints
// flag are filled in when tmpl leaves them zero.
func (ca *CA) Sign(tmpl *x509.Certificate) *certs.Bundle {
	ca.t.Helper()
	key, err := certs.NewKey(ca.keyType)
	if err != nil {
		ca.t.Fatalf("certstest: new key: %v", err)
	}
	if tmpl.SerialNumber == nil {
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 100))
		if err != nil {
			ca.t.Fatalf("certstest: serial: %v", err)
		}
		tmpl.SerialNumber = serial
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(time.Hour)
	}
	tmpl.BasicConstraintsValid = true
	if tmpl.KeyUsage == 0 {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		ca.t.Fatalf("certstest: sign %q: %v", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		ca.t.Fatalf("certstest: parse: %v", err)
	}
	return &certs.Bundle{Cert: cert, Key: key, CA: ca.Cert}
}

// Subject returns a subject named name with role as its role, for Sign.
func Subject(name string, role certs.Role) pkix.Name {
	return pkix.Name{CommonName: name, OrganizationalUnit: []string{string(role)}, Organization: []string{"overlord"}}
}

// TLSCert returns b's certificate and key as a tls.Certificate.
func TLSCert(t testing.TB, b *certs.Bundle) tls.Certificate {
	t.Helper()
	c, err := b.TLS()
	if err != nil {
		t.Fatalf("certstest: %v", err)
	}
	return c
}

// ServerTLS returns the minion's TLS configuration for identity b
// (certs.ServerConfig, trusting b's CA).
func ServerTLS(t testing.TB, b *certs.Bundle) *tls.Config {
	t.Helper()
	return certs.ServerConfig(TLSCert(t, b), b.Pool())
}

// ClientTLS returns the overlord's TLS configuration for identity b
// (certs.ClientConfig, trusting b's CA).
func ClientTLS(t testing.TB, b *certs.Bundle) *tls.Config {
	t.Helper()
	return certs.ClientConfig(TLSCert(t, b), b.Pool())
}

// WriteBundle writes b as a bundle file named name in dir with mode 0600
// and returns its path.
func WriteBundle(t testing.TB, dir, name string, b *certs.Bundle) string {
	t.Helper()
	data, err := b.Encode()
	if err != nil {
		t.Fatalf("certstest: encode bundle: %v", err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, certs.KeyMode); err != nil {
		t.Fatalf("certstest: %v", err)
	}
	return path
}

// PEM returns b's certificate, key and CA certificate as separate PEM
// blocks, for tests that assemble files of their own.
func PEM(t testing.TB, b *certs.Bundle) (cert, key, ca []byte) {
	t.Helper()
	k, err := certs.EncodeKey(b.Key)
	if err != nil {
		t.Fatalf("certstest: encode key: %v", err)
	}
	return certs.EncodeCert(b.Cert), k, certs.EncodeCert(b.CA)
}
