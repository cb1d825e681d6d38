package certs_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/certs/certstest"
)

func TestNewAuthority(t *testing.T) {
	tests := []struct {
		name    string
		kt      certs.KeyType
		checkFn func(t *testing.T, a *certs.Authority)
	}{
		{"ecdsa", certs.ECDSA, func(t *testing.T, a *certs.Authority) {
			k, ok := a.Key.(*ecdsa.PrivateKey)
			if !ok {
				t.Fatalf("key is %T, want *ecdsa.PrivateKey", a.Key)
			}
			if k.Curve != elliptic.P256() {
				t.Errorf("curve %s, want P-256", k.Curve.Params().Name)
			}
		}},
		{"default is ecdsa", "", func(t *testing.T, a *certs.Authority) {
			if _, ok := a.Key.(*ecdsa.PrivateKey); !ok {
				t.Fatalf("key is %T, want *ecdsa.PrivateKey", a.Key)
			}
		}},
		{"ed25519", certs.Ed25519, func(t *testing.T, a *certs.Authority) {
			if _, ok := a.Key.(ed25519.PrivateKey); !ok {
				t.Fatalf("key is %T, want ed25519.PrivateKey", a.Key)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := certs.NewAuthority("my CA", tt.kt)
			if err != nil {
				t.Fatal(err)
			}
			tt.checkFn(t, a)
			c := a.Cert
			if !c.IsCA || !c.BasicConstraintsValid {
				t.Errorf("IsCA=%v BasicConstraintsValid=%v, want both true", c.IsCA, c.BasicConstraintsValid)
			}
			if c.MaxPathLen != 0 || !c.MaxPathLenZero {
				t.Errorf("MaxPathLen=%d MaxPathLenZero=%v: the CA must not sign intermediates", c.MaxPathLen, c.MaxPathLenZero)
			}
			if c.KeyUsage&x509.KeyUsageCertSign == 0 {
				t.Error("CA certificate lacks KeyUsageCertSign")
			}
			if err := c.CheckSignatureFrom(c); err != nil {
				t.Errorf("CA is not self-signed: %v", err)
			}
			if c.Subject.CommonName != "my CA" {
				t.Errorf("CommonName %q, want %q", c.Subject.CommonName, "my CA")
			}
			if got := certs.RoleOf(c); got != "ca" {
				t.Errorf("RoleOf(CA) = %q, want ca", got)
			}
			if !c.NotAfter.After(time.Now().Add(5 * 365 * 24 * time.Hour)) {
				t.Errorf("CA expires %s, want years ahead", c.NotAfter)
			}
		})
	}
}

func TestNewKeyUnknownType(t *testing.T) {
	if _, err := certs.NewKey("rsa"); err == nil || !strings.Contains(err.Error(), "rsa") {
		t.Errorf("NewKey(rsa) = %v, want an error naming the type", err)
	}
	if _, err := certs.NewAuthority("x", "dsa"); err == nil {
		t.Error("NewAuthority with key type dsa: no error")
	}
}

func TestIssueRoles(t *testing.T) {
	for _, kt := range []certs.KeyType{certs.ECDSA, certs.Ed25519} {
		ca := certstest.NewCAType(t, kt)
		t.Run(string(kt)+"/minion", func(t *testing.T) {
			cert, key, err := ca.Issue("web1.example.org", certs.RoleMinion, kt)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
				t.Errorf("ExtKeyUsage %v, want ServerAuth only", cert.ExtKeyUsage)
			}
			if !slices.Equal(cert.DNSNames, []string{"web1.example.org"}) {
				t.Errorf("DNSNames %v, want [web1.example.org]", cert.DNSNames)
			}
			if err := cert.VerifyHostname("web1.example.org"); err != nil {
				t.Errorf("VerifyHostname: %v", err)
			}
			if got := certs.RoleOf(cert); got != certs.RoleMinion {
				t.Errorf("RoleOf = %q, want minion", got)
			}
			checkLeaf(t, ca, cert, key, x509.ExtKeyUsageServerAuth)
		})
		t.Run(string(kt)+"/overlord", func(t *testing.T) {
			cert, key, err := ca.Issue("op", certs.RoleOverlord, kt)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
				t.Errorf("ExtKeyUsage %v, want ClientAuth only", cert.ExtKeyUsage)
			}
			if len(cert.DNSNames) != 0 {
				t.Errorf("DNSNames %v, want none for a client identity", cert.DNSNames)
			}
			if got := certs.RoleOf(cert); got != certs.RoleOverlord {
				t.Errorf("RoleOf = %q, want overlord", got)
			}
			checkLeaf(t, ca, cert, key, x509.ExtKeyUsageClientAuth)
		})
	}
}

// checkLeaf checks what every issued certificate has: the CA's signature,
// a chain for its usage and no chain for the other, not a CA, the key.
func checkLeaf(t *testing.T, ca *certstest.CA, cert *x509.Certificate, key crypto.Signer, usage x509.ExtKeyUsage) {
	t.Helper()
	if cert.IsCA {
		t.Error("leaf certificate is a CA")
	}
	if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("not signed by the CA: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		t.Errorf("does not verify for its own usage: %v", err)
	}
	other := x509.ExtKeyUsageServerAuth
	if usage == x509.ExtKeyUsageServerAuth {
		other = x509.ExtKeyUsageClientAuth
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{other}}); err == nil {
		t.Errorf("verifies for %v too; a certificate must have one role", other)
	}
	if cert.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("leaf outlives its CA: %s > %s", cert.NotAfter, ca.Cert.NotAfter)
	}
	if !cert.NotBefore.Before(time.Now()) {
		t.Errorf("NotBefore %s is not in the past", cert.NotBefore)
	}
	b := &certs.Bundle{Cert: cert, Key: key, CA: ca.Cert}
	if _, err := b.TLS(); err != nil {
		t.Errorf("key does not match certificate: %v", err)
	}
}

func TestIssueRejects(t *testing.T) {
	ca := certstest.NewCA(t)
	tests := []struct {
		name    string
		cn      string
		role    certs.Role
		kt      certs.KeyType
		wantErr error  // errors.Is, if set
		wantMsg string // substring
	}{
		{"empty name", "", certs.RoleMinion, certs.ECDSA, certs.ErrBadName, ""},
		{"underscore", "web_1", certs.RoleMinion, certs.ECDSA, certs.ErrBadName, "web_1"},
		{"leading dash", "-web", certs.RoleMinion, certs.ECDSA, certs.ErrBadName, ""},
		{"trailing dot", "web.", certs.RoleMinion, certs.ECDSA, certs.ErrBadName, ""},
		{"space", "web 1", certs.RoleOverlord, certs.ECDSA, certs.ErrBadName, ""},
		{"glob", "web*", certs.RoleMinion, certs.ECDSA, certs.ErrBadName, ""},
		{"too long", strings.Repeat("a.", 127) + "ab", certs.RoleMinion, certs.ECDSA, certs.ErrBadName, ""},
		{"ca role", "x", "ca", certs.ECDSA, nil, "unknown role"},
		{"no role", "x", "", certs.ECDSA, nil, "unknown role"},
		{"bad key type", "x", certs.RoleMinion, "rsa", nil, "rsa"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, key, err := ca.Issue(tt.cn, tt.role, tt.kt)
			if err == nil {
				t.Fatalf("Issue(%q, %q) = %v, nil error", tt.cn, tt.role, cert.Subject)
			}
			if cert != nil || key != nil {
				t.Error("Issue returned a certificate or key along with an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tt.wantMsg)
			}
		})
	}
}

func TestCheckName(t *testing.T) {
	good := []string{"a", "web1", "web-1", "web1.example.org", "1host", "A-b.C-d", strings.Repeat("a", 63)}
	for _, n := range good {
		if err := certs.CheckName(n); err != nil {
			t.Errorf("CheckName(%q) = %v, want nil", n, err)
		}
	}
	bad := []string{"", "-a", "a-", "a..b", ".a", "a/b", "a:1", "é", "a b", "@db", "!x", strings.Repeat("a", 254)}
	for _, n := range bad {
		if err := certs.CheckName(n); !errors.Is(err, certs.ErrBadName) {
			t.Errorf("CheckName(%q) = %v, want ErrBadName", n, err)
		}
	}
}

func TestRoleOf(t *testing.T) {
	ca := certstest.NewCA(t)
	tests := []struct {
		name string
		cert *x509.Certificate
		want certs.Role
	}{
		{"minion", ca.Minion("web1").Cert, certs.RoleMinion},
		{"overlord", ca.Overlord("op").Cert, certs.RoleOverlord},
		{"ca", ca.Cert, "ca"},
		{"no OU", &x509.Certificate{}, ""},
		{"foreign OU", ca.Sign(&x509.Certificate{Subject: certstest.Subject("x", "admin")}).Cert, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := certs.RoleOf(tt.cert); got != tt.want {
				t.Errorf("RoleOf = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	ca := certstest.NewCA(t)
	a, b := ca.Minion("a").Cert, ca.Minion("a").Cert
	fa := certs.Fingerprint(a)
	if len(fa) != 64 || strings.Trim(fa, "0123456789abcdef") != "" {
		t.Errorf("Fingerprint = %q, want 64 lower-case hex digits", fa)
	}
	if fa != certs.Fingerprint(a) {
		t.Error("Fingerprint is not stable")
	}
	if fa == certs.Fingerprint(b) {
		t.Error("two certificates for the same name have the same fingerprint")
	}
}

func TestTLSConfigs(t *testing.T) {
	ca := certstest.NewCA(t)
	srv := certstest.ServerTLS(t, ca.Minion("web1"))
	if srv.MinVersion != tls.VersionTLS13 {
		t.Errorf("server MinVersion %x, want TLS 1.3", srv.MinVersion)
	}
	if srv.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("server ClientAuth %v, want RequireAndVerifyClientCert", srv.ClientAuth)
	}
	if srv.ClientCAs == nil || srv.VerifyConnection == nil {
		t.Error("server config lacks ClientCAs or VerifyConnection")
	}
	cli := certstest.ClientTLS(t, ca.Overlord("op"))
	if cli.MinVersion != tls.VersionTLS13 {
		t.Errorf("client MinVersion %x, want TLS 1.3", cli.MinVersion)
	}
	if cli.InsecureSkipVerify {
		t.Error("client config skips verification")
	}
	if cli.RootCAs == nil || cli.VerifyConnection == nil {
		t.Error("client config lacks RootCAs or VerifyConnection")
	}
}

// TestVerifyConnectionRoles calls each side's VerifyConnection with the
// certificates a peer could present. Full handshakes are in the rpc and
// minion tests.
func TestVerifyConnectionRoles(t *testing.T) {
	ca := certstest.NewCA(t)
	minion := ca.Minion("web1").Cert
	op := ca.Overlord("op").Cert
	gateway := ca.Gateway("gw1").Cert
	endpoint := ca.Bundle("ov.example", certs.RoleEndpoint).Cert
	noSAN := ca.Sign(&x509.Certificate{Subject: certstest.Subject("web2", certs.RoleMinion),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}).Cert
	otherSAN := ca.Sign(&x509.Certificate{Subject: certstest.Subject("web2", certs.RoleMinion), DNSNames: []string{"web3"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}).Cert
	noRole := ca.Sign(&x509.Certificate{Subject: certstest.Subject("x", ""),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}).Cert

	server := certstest.ServerTLS(t, ca.Minion("web1")).VerifyConnection
	client := certstest.ClientTLS(t, ca.Overlord("op")).VerifyConnection
	tests := []struct {
		name   string
		verify func(tls.ConnectionState) error
		peer   []*x509.Certificate
		ok     bool
		msg    string
	}{
		{"server accepts overlord", server, []*x509.Certificate{op}, true, ""},
		{"server accepts gateway", server, []*x509.Certificate{gateway}, true, ""},
		{"server refuses minion", server, []*x509.Certificate{minion}, false, "role minion, want overlord or gateway"},
		{"server refuses endpoint", server, []*x509.Certificate{endpoint}, false, "role endpoint, want overlord or gateway"},
		{"server refuses no role", server, []*x509.Certificate{noRole}, false, "role none, want overlord"},
		{"server refuses nothing", server, nil, false, "no certificate"},
		{"client accepts minion", client, []*x509.Certificate{minion}, true, ""},
		{"client refuses overlord", client, []*x509.Certificate{op}, false, "role overlord, want minion"},
		{"client refuses gateway", client, []*x509.Certificate{gateway}, false, "role gateway, want minion"},
		{"client refuses minion without SAN", client, []*x509.Certificate{noSAN}, false, "does not name itself"},
		{"client refuses minion naming another", client, []*x509.Certificate{otherSAN}, false, "does not name itself"},
		{"client refuses nothing", client, nil, false, "no certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.verify(tls.ConnectionState{PeerCertificates: tt.peer})
			if tt.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			var verr *tls.CertificateVerificationError
			if !errors.As(err, &verr) {
				t.Errorf("error %T is not a *tls.CertificateVerificationError", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
		})
	}
}
