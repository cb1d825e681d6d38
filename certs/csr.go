package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
)

// MaxCSRBytes bounds the DER of a certificate signing request this
// package parses; a minion's is a few hundred bytes.
const MaxCSRBytes = 16 << 10

// ErrBadCSR is returned (wrapped, with the reason) for a certificate
// signing request the CA will not sign.
var ErrBadCSR = errors.New("bad certificate signing request")

// oidSubjectAltName is the only extension a minion's request may carry.
var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// NewCSR returns the DER of a certificate signing request for a minion
// named name, signed with key: subject O=overlord, OU=minion, CN=name and
// name as its DNS name, which is what SignCSR accepts.
func NewCSR(key crypto.Signer, name string) ([]byte, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	tmpl := &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: name, OrganizationalUnit: []string{string(RoleMinion)}, Organization: []string{"overlord"}},
		DNSNames: []string{name},
	}
	return x509.CreateCertificateRequest(rand.Reader, tmpl, key)
}

// EncodeCSR returns a CSR's DER as a PEM block.
func EncodeCSR(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// DecodeCSR returns the DER of the one PEM certificate request in data.
func DecodeCSR(data []byte) ([]byte, error) {
	blk, rest := pem.Decode(data)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: no PEM CERTIFICATE REQUEST block", ErrBadCSR)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("%w: more after the PEM block", ErrBadCSR)
	}
	return blk.Bytes, nil
}

// CheckCSR parses the DER of a certificate signing request and checks
// that it is one a minion named name would send: a valid self-signature,
// a key of a supported type (ECDSA P-256 or P-384, Ed25519), subject
// common name name, no role but minion, no alternative name but name and
// no other requested extension. A request for a CA, for client
// authentication, for another role or for more names is refused, so that
// the operator who signs it is never misled about what it asks for;
// SignCSR ignores all of it anyway.
func CheckCSR(der []byte, name string) (*x509.CertificateRequest, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if len(der) > MaxCSRBytes {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrBadCSR, len(der), MaxCSRBytes)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrBadCSR, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if csr.Subject.CommonName != name {
		return nil, fmt.Errorf("%w: it is for %q, not %q", ErrBadCSR, csr.Subject.CommonName, name)
	}
	for _, ou := range csr.Subject.OrganizationalUnit {
		if Role(ou) != RoleMinion {
			return nil, fmt.Errorf("%w: it asks for role %q; only minion certificates are issued to requests", ErrBadCSR, ou)
		}
	}
	if len(csr.DNSNames) > 1 || (len(csr.DNSNames) == 1 && csr.DNSNames[0] != name) {
		return nil, fmt.Errorf("%w: it asks for the names %q; a minion's certificate names only %q", ErrBadCSR, csr.DNSNames, name)
	}
	if len(csr.IPAddresses)+len(csr.EmailAddresses)+len(csr.URIs) > 0 {
		return nil, fmt.Errorf("%w: it asks for IP, e-mail or URI names; a minion's certificate has none", ErrBadCSR)
	}
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			return nil, fmt.Errorf("%w: it asks for extension %s; only a subject alternative name may be requested", ErrBadCSR, ext.Id)
		}
	}
	return csr, nil
}

func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !slices.Contains([]elliptic.Curve{elliptic.P256(), elliptic.P384()}, k.Curve) {
			return fmt.Errorf("ECDSA curve %s is not supported (want P-256 or P-384)", k.Curve.Params().Name)
		}
		return nil
	case ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("key type %T is not supported (want ECDSA or Ed25519)", pub)
}

// SignCSR checks a minion's certificate signing request with CheckCSR and
// issues a minion certificate for name and the request's public key. The
// certificate is made from the same template as Issue's: role minion,
// server authentication only, name as its only DNS name, not a CA.
// Nothing else the request asks for is copied into it.
func (a *Authority) SignCSR(der []byte, name string) (*x509.Certificate, error) {
	csr, err := CheckCSR(der, name)
	if err != nil {
		return nil, err
	}
	return a.sign(name, RoleMinion, csr.PublicKey)
}
