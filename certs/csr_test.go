package certs_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/certs/certstest"
)

func newCSR(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func mustKey(t *testing.T, kt certs.KeyType) crypto.Signer {
	t.Helper()
	k, err := certs.NewKey(kt)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNewCSRIsAccepted(t *testing.T) {
	for _, kt := range []certs.KeyType{certs.ECDSA, certs.Ed25519} {
		t.Run(string(kt), func(t *testing.T) {
			key := mustKey(t, kt)
			der, err := certs.NewCSR(key, "web4.example.org")
			if err != nil {
				t.Fatal(err)
			}
			pemDER, err := certs.DecodeCSR(certs.EncodeCSR(der))
			if err != nil || !slices.Equal(pemDER, der) {
				t.Fatalf("PEM round trip: %v", err)
			}
			csr, err := certs.CheckCSR(der, "web4.example.org")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := certs.KeyFingerprint(csr.PublicKey), certs.KeyFingerprint(key.Public()); got != want {
				t.Errorf("key fingerprint %s, want %s", got, want)
			}
		})
	}
	if _, err := certs.NewCSR(mustKey(t, certs.ECDSA), "10.0.0.1"); err == nil {
		t.Error("NewCSR accepted an IP address as a name")
	}
}

func TestCheckCSRRefuses(t *testing.T) {
	key := mustKey(t, certs.ECDSA)
	subject := func(cn string, ou ...string) pkix.Name {
		return pkix.Name{CommonName: cn, OrganizationalUnit: ou, Organization: []string{"overlord"}}
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// basicConstraints CA:TRUE, DER: SEQUENCE { BOOLEAN TRUE }
	caExt := pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: []byte{0x30, 0x03, 0x01, 0x01, 0xff}}
	// extKeyUsage clientAuth
	ekuValue, _ := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 2}})
	ekuExt := pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Value: ekuValue}

	tests := []struct {
		name string
		der  []byte
		as   string
		want string
	}{
		{"another name", newCSR(t, key, &x509.CertificateRequest{Subject: subject("web5", "minion")}), "web4", `for "web5", not "web4"`},
		{"overlord role", newCSR(t, key, &x509.CertificateRequest{Subject: subject("web4", "overlord")}), "web4", `role "overlord"`},
		{"two roles", newCSR(t, key, &x509.CertificateRequest{Subject: subject("web4", "minion", "overlord")}), "web4", `role "overlord"`},
		{"ca role", newCSR(t, key, &x509.CertificateRequest{Subject: subject("web4", "ca")}), "web4", `role "ca"`},
		{"endpoint role", newCSR(t, key, &x509.CertificateRequest{Subject: subject("web4", "endpoint")}), "web4", `role "endpoint"`},
		{"more names", newCSR(t, key, &x509.CertificateRequest{Subject: subject("web4"), DNSNames: []string{"web4", "db1"}}), "web4", "names"},
		{"another DNS name", newCSR(t, key, &x509.CertificateRequest{Subject: subject("web4"), DNSNames: []string{"db1"}}), "web4", "names"},
		{"IP name", newCSR(t, key, &x509.CertificateRequest{Subject: subject("web4"), IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}}), "web4", "IP"},
		{"e-mail name", newCSR(t, key, &x509.CertificateRequest{Subject: subject("web4"), EmailAddresses: []string{"a@b.c"}}), "web4", "e-mail"},
		{"URI name", newCSR(t, key, &x509.CertificateRequest{Subject: subject("web4"), URIs: []*url.URL{{Scheme: "spiffe", Host: "x"}}}), "web4", "URI"},
		{"CA extension", newCSR(t, key, &x509.CertificateRequest{Subject: subject("web4"), ExtraExtensions: []pkix.Extension{caExt}}), "web4", "extension 2.5.29.19"},
		{"client auth", newCSR(t, key, &x509.CertificateRequest{Subject: subject("web4"), ExtraExtensions: []pkix.Extension{ekuExt}}), "web4", "extension 2.5.29.37"},
		{"RSA key", newCSR(t, rsaKey, &x509.CertificateRequest{Subject: subject("web4")}), "web4", "not supported"},
		{"P-521 key", newCSR(t, p521, &x509.CertificateRequest{Subject: subject("web4")}), "web4", "P-521"},
		{"garbage", []byte("not DER at all"), "web4", "bad certificate signing request"},
		{"bad name", newCSR(t, key, &x509.CertificateRequest{Subject: subject("-x")}), "-x", "bad name"},
		{"too big", make([]byte, certs.MaxCSRBytes+1), "web4", "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := certs.CheckCSR(tt.der, tt.as)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckCSR: %v, want an error with %q", err, tt.want)
			}
			ca := certstest.NewCA(t)
			if c, err := ca.SignCSR(tt.der, tt.as); err == nil {
				t.Fatalf("SignCSR signed it: %v", c.Subject)
			}
		})
	}
}

func TestCheckCSRBadSignature(t *testing.T) {
	der, err := certs.NewCSR(mustKey(t, certs.ECDSA), "web4")
	if err != nil {
		t.Fatal(err)
	}
	der = slices.Clone(der)
	der[len(der)-3] ^= 0xff // inside the signature
	if _, err := certs.CheckCSR(der, "web4"); !errors.Is(err, certs.ErrBadCSR) {
		t.Fatalf("CheckCSR of a tampered request: %v, want ErrBadCSR", err)
	}
}

// TestSignCSRMakesMinionCertificates: whatever a request asks for, what
// the CA signs is a minion's server certificate, never a CA or a client.
func TestSignCSRMakesMinionCertificates(t *testing.T) {
	for _, kt := range []certs.KeyType{certs.ECDSA, certs.Ed25519} {
		t.Run(string(kt), func(t *testing.T) {
			ca := certstest.NewCAType(t, kt)
			key := mustKey(t, kt)
			der, err := certs.NewCSR(key, "web4")
			if err != nil {
				t.Fatal(err)
			}
			c, err := ca.SignCSR(der, "web4")
			if err != nil {
				t.Fatal(err)
			}
			checkMinionCert(t, c, ca, "web4")
			if certs.KeyFingerprint(c.PublicKey) != certs.KeyFingerprint(key.Public()) {
				t.Error("the certificate is not for the request's key")
			}
			// It works as a minion's identity with the requester's key.
			b := &certs.Bundle{Cert: c, Key: key, CA: ca.Cert}
			if _, err := b.TLS(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func checkMinionCert(t *testing.T, c *x509.Certificate, ca *certstest.CA, name string) {
	t.Helper()
	if c.IsCA {
		t.Error("IsCA is set")
	}
	if got := certs.RoleOf(c); got != certs.RoleMinion {
		t.Errorf("role %q, want minion", got)
	}
	if !slices.Equal(c.Subject.OrganizationalUnit, []string{"minion"}) {
		t.Errorf("OU %q, want only minion", c.Subject.OrganizationalUnit)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) || len(c.UnknownExtKeyUsage) > 0 {
		t.Errorf("extended key usage %v, want server auth only", c.ExtKeyUsage)
	}
	if c.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		t.Errorf("key usage %b allows signing certificates or CRLs", c.KeyUsage)
	}
	if !slices.Equal(c.DNSNames, []string{name}) || len(c.IPAddresses)+len(c.EmailAddresses)+len(c.URIs) > 0 {
		t.Errorf("names %v %v %v %v, want only DNS %s", c.DNSNames, c.IPAddresses, c.EmailAddresses, c.URIs, name)
	}
	if c.Subject.CommonName != name {
		t.Errorf("CN %q, want %q", c.Subject.CommonName, name)
	}
	if err := c.CheckSignatureFrom(ca.Cert); err != nil {
		t.Error(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("the certificate verifies for client authentication")
	}
}

// FuzzCheckCSR: no input makes CheckCSR panic, and whatever it accepts,
// SignCSR turns into a minion certificate for the name asked.
func FuzzCheckCSR(f *testing.F) {
	key, err := certs.NewKey(certs.ECDSA)
	if err != nil {
		f.Fatal(err)
	}
	good, err := certs.NewCSR(key, "web4")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, "web4")
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00}, "web4")
	f.Add([]byte{}, "")
	ca, err := certs.NewAuthority("fuzz CA", certs.ECDSA)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, der []byte, name string) {
		if _, err := certs.CheckCSR(der, name); err != nil {
			return
		}
		c, err := ca.SignCSR(der, name)
		if err != nil {
			t.Fatalf("CheckCSR accepted what SignCSR refused: %v", err)
		}
		if c.IsCA || certs.RoleOf(c) != certs.RoleMinion || !slices.Equal(c.DNSNames, []string{name}) {
			t.Fatalf("signed a certificate that is not a minion's for %q: CA=%v role=%q names=%v", name, c.IsCA, certs.RoleOf(c), c.DNSNames)
		}
	})
}
