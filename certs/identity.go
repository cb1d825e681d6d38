package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"
)

// MaxIdentityBytes bounds the DER of a certificate VerifyOverlord reads.
// The CA's leaf certificates are well under 1 KiB.
const MaxIdentityBytes = 8 << 10

// ErrNotIdentity is returned (wrapped, with the reason) by VerifyOverlord
// for a certificate that is not a valid overlord identity of the CA.
var ErrNotIdentity = errors.New("not a valid overlord identity of this CA")

// VerifyOverlord checks that der is the certificate of an overlord
// identity of the CA in roots, valid at now: it parses, chains to the CA,
// is within its validity dates (and the CA within its own), allows TLS
// client authentication, carries the overlord role and a valid name. It
// is what a TLS handshake checks of a client, for a certificate that
// came by another way: a minion uses it on the identity a gateway calls
// for (rpc.OnBehalfOfHeader). Revocation is the caller's to check
// (CheckRevoked): a list can change after the certificate is verified.
func VerifyOverlord(der []byte, roots *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	if len(der) == 0 {
		return nil, fmt.Errorf("%w: no certificate", ErrNotIdentity)
	}
	if len(der) > MaxIdentityBytes {
		return nil, fmt.Errorf("%w: %d bytes, more than the %d a certificate may have", ErrNotIdentity, len(der), MaxIdentityBytes)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: not a certificate: %v", ErrNotIdentity, err)
	}
	name := cert.Subject.CommonName
	if role := RoleOf(cert); role != RoleOverlord {
		if role == "" {
			role = "none"
		}
		return nil, fmt.Errorf("%w: certificate %q has role %s, not overlord", ErrNotIdentity, name, role)
	}
	if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return nil, fmt.Errorf("%w: certificate %q does not allow TLS client authentication", ErrNotIdentity, name)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("%w: certificate %q: %v", ErrNotIdentity, name, err)
	}
	if err := CheckName(name); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotIdentity, err)
	}
	return cert, nil
}
