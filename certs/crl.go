package certs

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// MaxCRLBytes bounds the DER of a revocation list this package parses:
// room for about 100,000 entries.
const MaxCRLBytes = 4 << 20

// ErrBadCRL is returned (wrapped, with the reason) for a revocation list
// that is not one of the CA's.
var ErrBadCRL = errors.New("bad revocation list")

// Revocation is one entry of a revocation list: a certificate's serial
// number and when it was revoked.
type Revocation struct {
	Serial *big.Int
	At     time.Time
}

// NewCRL returns the DER of an X.509 revocation list (CRL) signed by the
// CA, numbered number (which must grow with every new list) and listing
// revoked. Its next-update time is the CA's expiry: a list does not go
// stale, it is only replaced by one with a higher number.
func (a *Authority) NewCRL(number int64, revoked []Revocation, now time.Time) ([]byte, error) {
	if number < 1 {
		return nil, fmt.Errorf("CRL number must be positive, not %d", number)
	}
	entries := make([]x509.RevocationListEntry, len(revoked))
	for i, r := range revoked {
		entries[i] = x509.RevocationListEntry{SerialNumber: r.Serial, RevocationTime: r.At.UTC()}
	}
	next := a.Cert.NotAfter
	if !next.After(now) {
		next = now.Add(time.Hour)
	}
	tmpl := &x509.RevocationList{
		Number:                    big.NewInt(number),
		ThisUpdate:                now.UTC(),
		NextUpdate:                next.UTC(),
		RevokedCertificateEntries: entries,
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, a.Cert, a.Key)
	if err != nil {
		return nil, fmt.Errorf("sign revocation list: %w", err)
	}
	return der, nil
}

// CRL is a revocation list whose signature has been checked against a CA.
type CRL struct {
	// Number orders lists: a higher number replaces a lower one.
	Number int64
	// DER is the list as signed.
	DER     []byte
	serials map[string]time.Time // Serial(cert) -> revoked at
}

// ParseCRL parses the DER of a revocation list and checks that ca issued
// and signed it and that it carries a positive number. An expired
// next-update time is not an error: a list is only ever replaced by a
// newer one.
func ParseCRL(der []byte, ca *x509.Certificate) (*CRL, error) {
	if len(der) > MaxCRLBytes {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrBadCRL, len(der), MaxCRLBytes)
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCRL, err)
	}
	if !bytes.Equal(rl.RawIssuer, ca.RawSubject) {
		return nil, fmt.Errorf("%w: issued by %q, not by this CA", ErrBadCRL, rl.Issuer)
	}
	if err := rl.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("%w: not signed by this CA: %v", ErrBadCRL, err)
	}
	if rl.Number == nil || rl.Number.Sign() <= 0 || !rl.Number.IsInt64() {
		return nil, fmt.Errorf("%w: no usable CRL number", ErrBadCRL)
	}
	c := &CRL{Number: rl.Number.Int64(), DER: bytes.Clone(der), serials: make(map[string]time.Time, len(rl.RevokedCertificateEntries))}
	for _, e := range rl.RevokedCertificateEntries {
		c.serials[e.SerialNumber.Text(16)] = e.RevocationTime
	}
	return c, nil
}

// Len returns how many certificates the list revokes.
func (c *CRL) Len() int {
	if c == nil {
		return 0
	}
	return len(c.serials)
}

// Revoked reports whether the list revokes cert, and since when. A nil
// list revokes nothing.
func (c *CRL) Revoked(cert *x509.Certificate) (time.Time, bool) {
	if c == nil || cert == nil || cert.SerialNumber == nil {
		return time.Time{}, false
	}
	at, ok := c.serials[Serial(cert)]
	return at, ok
}

// RevokesSerial reports whether the list revokes the certificate with
// serial number serial.
func (c *CRL) RevokesSerial(serial *big.Int) bool {
	if c == nil || serial == nil {
		return false
	}
	_, ok := c.serials[serial.Text(16)]
	return ok
}

// NumberOf returns the list's number, 0 for a nil list.
func (c *CRL) NumberOf() int64 {
	if c == nil {
		return 0
	}
	return c.Number
}

// EncodeCRL returns a CRL's DER as a PEM block.
func EncodeCRL(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// DecodeCRL returns the DER of the one PEM revocation list in data.
func DecodeCRL(data []byte) ([]byte, error) {
	blk, rest := pem.Decode(data)
	if blk == nil || blk.Type != "X509 CRL" {
		return nil, fmt.Errorf("%w: no PEM X509 CRL block", ErrBadCRL)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("%w: more after the PEM block", ErrBadCRL)
	}
	return blk.Bytes, nil
}

// RefuseRevoked makes cfg also refuse a peer whose certificate the
// current revocation list revokes. current is asked at every handshake
// (TLS session resumptions included), so a list replaced while a server
// runs takes effect at the next connection; it may return nil.
func RefuseRevoked(cfg *tls.Config, current func() *CRL) *tls.Config {
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if verify != nil {
			if err := verify(cs); err != nil {
				return err
			}
		}
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		if err := CheckRevoked(current(), cs.PeerCertificates[0]); err != nil {
			return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
		}
		return nil
	}
	return cfg
}

// ErrRevoked is returned (wrapped) for a certificate a revocation list
// revokes.
var ErrRevoked = errors.New("revoked")

// CheckRevoked returns an error wrapping ErrRevoked if crl revokes cert.
func CheckRevoked(crl *CRL, cert *x509.Certificate) error {
	at, revoked := crl.Revoked(cert)
	if !revoked {
		return nil
	}
	role := RoleOf(cert)
	if role == "" {
		role = "unknown"
	}
	return fmt.Errorf("%s certificate %q (serial %s) was %w at %s (CRL %d)",
		role, cert.Subject.CommonName, Serial(cert), ErrRevoked, at.UTC().Format(time.RFC3339), crl.Number)
}
