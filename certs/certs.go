// Package certs is the project's small certificate authority: it makes the
// CA, issues minion (server) and overlord (client) certificates whose role
// is part of the certificate, reads and writes PEM files and bundles with
// safe permissions, and builds the TLS configurations both sides use.
//
// A certificate's role is its Subject OrganizationalUnit: "minion" for a
// minion's server certificate (server auth only, the minion's name in the
// DNS SAN), "overlord" for an overlord identity (client auth only),
// "endpoint" for the overlord's enrolment endpoint (server auth only),
// "gateway" for a gateway (server and client auth, its name in the DNS
// SAN), which calls minions on behalf of overlord identities.
//
// Minions can also enrol online: a minion makes its key and a certificate
// signing request (NewCSR), and the CA signs it as a minion certificate
// whatever it asks for (SignCSR). Revoked certificates are listed in a
// CRL the CA signs (NewCRL, ParseCRL) and refused by RefuseRevoked.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Role is what a certificate may be used for.
type Role string

// Roles.
const (
	RoleMinion   Role = "minion"   // server auth: a minion daemon
	RoleOverlord Role = "overlord" // client auth: an operator, a CI job, a driver
	RoleEndpoint Role = "endpoint" // server auth: the overlord's enrolment endpoint
	// RoleGateway is a gateway (`overlord serve` on another machine): a
	// server to the overlord, which sends it calls for the minions behind
	// it, and a client to those minions, calling on behalf of the
	// overlord identity that sent the call (rpc.OnBehalfOfHeader).
	RoleGateway Role = "gateway"
	roleCA      Role = "ca"
)

// KeyType is the kind of key to generate.
type KeyType string

// Key types.
const (
	ECDSA   KeyType = "ecdsa" // ECDSA P-256
	Ed25519 KeyType = "ed25519"
)

// Validity periods.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	LeafValidity = 825 * 24 * time.Hour
)

// ErrBadName is returned for a name that cannot be a certificate name.
var ErrBadName = errors.New("bad name: use letters, digits, '-' and '.', starting with a letter or digit, at most 253 characters")

var nameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

// CheckName returns ErrBadName (wrapped, with the name) unless name is a
// valid minion or identity name: a DNS-style name.
func CheckName(name string) error {
	if len(name) > 253 || !nameRE.MatchString(name) {
		return fmt.Errorf("%q: %w", name, ErrBadName)
	}
	if net.ParseIP(name) != nil {
		// TLS checks an IP-shaped server name against IP SANs, which
		// minion certificates do not carry: such a name could never be
		// called.
		return fmt.Errorf("%q is an IP address: give the minion a name, and its address with --addr", name)
	}
	return nil
}

// SameName reports whether a and b are the same minion or identity name.
// Names are DNS-style, so case does not tell two apart: "Ops" and "ops"
// are one identity. Every comparison of names that decides who is who
// goes through it (or NameKey): the CA refusing a name in use, a minion's
// access list and its ownership of async jobs.
func SameName(a, b string) bool { return NameKey(a) == NameKey(b) }

// NameKey returns the form of name that SameName compares, for map keys.
func NameKey(name string) string { return strings.ToLower(name) }

// Authority is a CA: its certificate and its private key.
type Authority struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewKey generates a private key of type t.
func NewKey(t KeyType) (crypto.Signer, error) {
	switch t {
	case ECDSA, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("unknown key type %q (want ecdsa or ed25519)", t)
}

// NewAuthority makes a self-signed CA named name.
func NewAuthority(name string, t KeyType) (*Authority, error) {
	key, err := NewKey(t)
	if err != nil {
		return nil, err
	}
	tmpl := template(name, roleCA, CAValidity)
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.MaxPathLenZero = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Authority{Cert: cert, Key: key}, nil
}

// Issue makes a key of type t and a certificate for it, signed by the CA,
// for name in role.
func (a *Authority) Issue(name string, role Role, t KeyType) (*x509.Certificate, crypto.Signer, error) {
	if err := CheckName(name); err != nil {
		return nil, nil, err
	}
	key, err := NewKey(t)
	if err != nil {
		return nil, nil, err
	}
	cert, err := a.sign(name, role, key.Public())
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// sign makes a leaf certificate for the public key pub, named name, in
// role. Everything in it but the key comes from here: nothing a requester
// asks for is copied.
func (a *Authority) sign(name string, role Role, pub crypto.PublicKey) (*x509.Certificate, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	tmpl := template(name, role, LeafValidity)
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if _, isECDSA := pub.(*ecdsa.PublicKey); isECDSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyAgreement
	}
	switch role {
	case RoleMinion, RoleEndpoint:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{name}
	case RoleOverlord:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case RoleGateway:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = []string{name}
	default:
		return nil, fmt.Errorf("unknown role %q", role)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, pub, a.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", name, err)
	}
	return x509.ParseCertificate(der)
}

func template(name string, role Role, validity time.Duration) *x509.Certificate {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, OrganizationalUnit: []string{string(role)}, Organization: []string{"overlord"}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(validity),
	}
}

// RoleOf returns the role a certificate carries, or "" if none.
func RoleOf(c *x509.Certificate) Role {
	for _, ou := range c.Subject.OrganizationalUnit {
		switch Role(ou) {
		case RoleMinion, RoleOverlord, RoleEndpoint, RoleGateway, roleCA:
			return Role(ou)
		}
	}
	return ""
}

// Fingerprint returns the hex SHA-256 of a certificate's DER bytes.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// KeyFingerprint returns the hex SHA-256 of a public key's DER
// SubjectPublicKeyInfo: the same for a certificate signing request and
// the certificate made from it, so an operator can compare the two.
func KeyFingerprint(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// Serial returns a certificate's serial number as lower-case hex, the
// form the overlord records and prints.
func Serial(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

// ServerConfig is the minion's TLS configuration: TLS 1.3, a client
// certificate of the CA required, and that certificate must carry the
// overlord role or the gateway role. A gateway calls only on behalf of
// an overlord identity, which the minion checks per request
// (VerifyOverlord).
func ServerConfig(id tls.Certificate, ca *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return requireRole(cs, RoleOverlord, RoleGateway)
		},
	}
}

// ClientConfig is the overlord's TLS configuration: TLS 1.3, the minion's
// certificate must be of the CA, carry the minion role, and name the
// minion dialled (tls.Config.ServerName, which the HTTP transport sets from
// the URL's host: the minion's name).
func ClientConfig(id tls.Certificate, ca *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{id},
		RootCAs:            ca,
		ClientSessionCache: tls.NewLRUClientSessionCache(0),
		VerifyConnection: func(cs tls.ConnectionState) error {
			return requireRole(cs, RoleMinion)
		},
	}
}

// requireRole checks the peer's leaf certificate carries one of the roles
// want. Its error is a *tls.CertificateVerificationError, like the
// standard library's own verification failures, so callers classify it
// as TLS.
func requireRole(cs tls.ConnectionState, want ...Role) error {
	if len(cs.PeerCertificates) == 0 {
		return &tls.CertificateVerificationError{Err: errors.New("peer presented no certificate")}
	}
	leaf := cs.PeerCertificates[0]
	var err error
	if got := RoleOf(leaf); !slices.Contains(want, got) {
		if got == "" {
			got = "none"
		}
		err = fmt.Errorf("certificate %q has role %s, want %s", leaf.Subject.CommonName, got, roleList(want))
	} else if got == RoleMinion && !slices.Contains(leaf.DNSNames, leaf.Subject.CommonName) {
		err = fmt.Errorf("minion certificate %q does not name itself in its SAN", leaf.Subject.CommonName)
	}
	if err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
	}
	return nil
}

// roleList names roles for a message: "overlord", "overlord or gateway".
func roleList(roles []Role) string {
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = string(r)
	}
	return strings.Join(names, " or ")
}

// Pin makes cfg also require that the certificate a minion presents is
// the one issued to it: pinned returns the fingerprint on record for a
// minion name (tls.ConnectionState.ServerName), or ok=false to skip the
// check. A re-issued or removed-and-re-added minion's old certificate is
// then refused.
func Pin(cfg *tls.Config, pinned func(name string) (fingerprint string, ok bool)) *tls.Config {
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if verify != nil {
			if err := verify(cs); err != nil {
				return err
			}
		}
		want, ok := pinned(cs.ServerName)
		if !ok || want == "" {
			return nil
		}
		if got := Fingerprint(cs.PeerCertificates[0]); got != want {
			return &tls.CertificateVerificationError{
				UnverifiedCertificates: cs.PeerCertificates,
				Err: fmt.Errorf("minion %s presented certificate %.16s…, not the one issued to it (%.16s…): install its current bundle, or re-add it",
					cs.ServerName, got, want),
			}
		}
		return nil
	}
	return cfg
}
