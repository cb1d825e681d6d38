package jobstest

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/overlordhq/overlord/jobs"
)

// Signer is a fake jobs.Signer for enrolment tests: it signs by counting,
// serials 51, 52, ..., with certificate fingerprint cert-SERIAL and DER
// der-SERIAL, issued At; with Fail set it fails with it instead.
type Signer struct {
	At time.Time

	mu    sync.Mutex
	N     int      // how many it signed
	Names []string // the names it signed, in order
	Fail  error
}

// Sign is the jobs.Signer.
func (f *Signer) Sign(r jobs.CertRequest) (jobs.Signed, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Fail != nil {
		return jobs.Signed{}, f.Fail
	}
	f.N++
	f.Names = append(f.Names, r.Name)
	serial := "5" + strconv.Itoa(f.N)
	return jobs.Signed{
		Cert: jobs.Cert{Serial: serial, Name: r.Name, Role: "minion", Fingerprint: "cert-" + serial,
			KeyFingerprint: r.KeyFingerprint, Source: "test", IssuedAt: f.At, NotAfter: f.At.Add(24 * time.Hour)},
		DER: []byte("der-" + serial),
	}, nil
}

// Request returns a certificate request for name from the key whose
// fingerprint is key.
func Request(name, key string) jobs.CertRequest {
	return jobs.CertRequest{Name: name, Addr: "127.0.0.1:5000", CSR: []byte("csr-" + key), KeyFingerprint: key, From: "127.0.0.1:40000"}
}

// TokenHash returns the hex SHA-256 of secret, as a join token is stored.
func TokenHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// AddToken stores join token id with secret, made at, valid for ttl and
// uses enrolments.
func AddToken(t testing.TB, s *jobs.Store, id, secret string, uses int, at time.Time, ttl time.Duration) {
	t.Helper()
	if err := s.AddToken(jobs.Token{ID: id, Hash: TokenHash(secret), CreatedAt: at, ExpiresAt: at.Add(ttl), Uses: uses}); err != nil {
		t.Fatal(err)
	}
}
