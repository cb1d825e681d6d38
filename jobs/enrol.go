package jobs

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/overlordhq/overlord/jobs/internal/kv"

	"github.com/overlordhq/overlord/certs"
)

// Buckets of online enrolment and revocation. Stores made before these
// existed lack them: writes create them, reads treat them as empty.
var (
	bucketTokens   = []byte("tokens")
	bucketRequests = []byte("requests")
	bucketCerts    = []byte("certs")
	bucketCRL      = []byte("crl")
	keyCRLNumber   = []byte("number")
	keyCRLDER      = []byte("der")
)

var (
	// ErrNotPending is returned when signing or rejecting a request that
	// is not pending.
	ErrNotPending = errors.New("no pending certificate request")

	// ErrNameInUse is returned when issuing an overlord identity for a
	// name (whatever its case) that an identity certificate not revoked
	// already carries.
	ErrNameInUse = errors.New("name in use")
)

// States of a certificate request and of a certificate.
const (
	StatePending  = "pending"
	StateSigned   = "signed"
	StateRejected = "rejected"
	StateRevoked  = "revoked"
)

// Token is a join token as stored: never its secret, only its hash.
type Token struct {
	ID        string    `json:"id"`
	Hash      string    `json:"hash"` // hex SHA-256 of the secret
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Uses      int       `json:"uses"` // how many enrolments it allows
	Used      int       `json:"used"`
}

// State returns "valid", "expired" or "used up" at time now.
func (t Token) State(now time.Time) string {
	switch {
	case t.Used >= t.Uses:
		return "used up"
	case !now.Before(t.ExpiresAt):
		return "expired"
	}
	return "valid"
}

// CertRequest is a minion's certificate signing request and what became
// of it. There is at most one per name.
type CertRequest struct {
	Name           string     `json:"name"`
	Addr           string     `json:"addr"`
	CSR            []byte     `json:"csr"` // DER
	KeyFingerprint string     `json:"key_fingerprint"`
	State          string     `json:"state"`
	From           string     `json:"from,omitempty"`     // the requester's network address
	TokenID        string     `json:"token_id,omitempty"` // the token that signed it
	RequestedAt    time.Time  `json:"requested_at"`
	DecidedAt      *time.Time `json:"decided_at,omitempty"`
	Serial         string     `json:"serial,omitempty"`
	Cert           []byte     `json:"cert,omitempty"` // DER, once signed
}

// Cert is a certificate the CA issued, as recorded.
type Cert struct {
	Serial         string     `json:"serial"` // lower-case hex
	Name           string     `json:"name"`
	Role           string     `json:"role"`
	Fingerprint    string     `json:"fingerprint"`
	KeyFingerprint string     `json:"key_fingerprint"`
	Source         string     `json:"source"` // the command that issued it
	IssuedAt       time.Time  `json:"issued_at"`
	NotAfter       time.Time  `json:"not_after"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
}

// State returns StateSigned or StateRevoked.
func (c Cert) State() string {
	if c.RevokedAt != nil {
		return StateRevoked
	}
	return StateSigned
}

// Signed is what a Signer returns: the certificate's record and DER.
type Signed struct {
	Cert Cert
	DER  []byte
}

// A Signer signs a request's CSR. It is called inside the write
// transaction that records the result, so that a request is signed at
// most once and a token's use is counted exactly when it signs.
type Signer func(r CertRequest) (Signed, error)

// AddToken stores a join token.
func (s *Store) AddToken(t Token) error {
	return s.update(func(tx kv.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketTokens)
		if err != nil {
			return err
		}
		if b.Get([]byte(t.ID)) != nil {
			return fmt.Errorf("token %s: %w", t.ID, ErrExists)
		}
		return putJSON(b, []byte(t.ID), t)
	})
}

// Tokens returns every stored join token, oldest first.
func (s *Store) Tokens() ([]Token, error) {
	var out []Token
	err := s.view(func(tx kv.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			var t Token
			if err := getJSON(b, k, &t); err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, err
}

// DeleteToken removes a join token, so it can sign nothing more.
func (s *Store) DeleteToken(id string) error {
	return s.update(func(tx kv.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b == nil || b.Get([]byte(id)) == nil {
			return fmt.Errorf("token %s: %w", id, ErrNotFound)
		}
		return b.Delete([]byte(id))
	})
}

// EnrolTx is one transaction on the enrolment records, for the
// enrolment policy (overlord's Enrol), which decides what to read and
// write: typed reads and writes of certificate requests, join tokens and
// the registry. In a ViewEnrolment transaction every write fails.
type EnrolTx struct{ tx kv.Tx }

// ViewEnrolment runs fn in a read transaction.
func (s *Store) ViewEnrolment(fn func(EnrolTx) error) error {
	return s.view(func(tx kv.Tx) error { return fn(EnrolTx{tx}) })
}

// UpdateEnrolment runs fn in one write transaction: what fn checks and
// what it writes are one step, and if fn returns an error nothing it
// wrote is kept.
func (s *Store) UpdateEnrolment(fn func(EnrolTx) error) error {
	return s.update(func(tx kv.Tx) error { return fn(EnrolTx{tx}) })
}

// Request returns the certificate request for name; ok is false if
// there is none.
func (e EnrolTx) Request(name string) (r CertRequest, ok bool, err error) {
	b := e.tx.Bucket(bucketRequests)
	if b == nil || b.Get([]byte(name)) == nil {
		return CertRequest{}, false, nil
	}
	err = getJSON(b, []byte(name), &r)
	return r, err == nil, err
}

// PutRequest stores r as the request for r.Name, replacing any.
func (e EnrolTx) PutRequest(r CertRequest) error {
	b, err := e.tx.CreateBucketIfNotExists(bucketRequests)
	if err != nil {
		return err
	}
	return putJSON(b, []byte(r.Name), r)
}

// PendingRequests returns how many requests are pending.
func (e EnrolTx) PendingRequests() int {
	reqs := e.tx.Bucket(bucketRequests)
	if reqs == nil {
		return 0
	}
	n := 0
	_ = reqs.ForEach(func(k, _ []byte) error {
		var r CertRequest
		if getJSON(reqs, k, &r) == nil && r.State == StatePending {
			n++
		}
		return nil
	})
	return n
}

// Token returns the join token id; ok is false if there is none.
func (e EnrolTx) Token(id string) (t Token, ok bool, err error) {
	b := e.tx.Bucket(bucketTokens)
	if b == nil || b.Get([]byte(id)) == nil {
		return Token{}, false, nil
	}
	err = getJSON(b, []byte(id), &t)
	return t, err == nil, err
}

// PutToken stores t, replacing the token of its ID (its use counted).
func (e EnrolTx) PutToken(t Token) error {
	b, err := e.tx.CreateBucketIfNotExists(bucketTokens)
	if err != nil {
		return err
	}
	return putJSON(b, []byte(t.ID), t)
}

// Registered reports whether name is a registered minion.
func (e EnrolTx) Registered(name string) bool {
	return e.tx.Bucket(bucketMinions).Get([]byte(name)) != nil
}

// Sign signs req with sign, records the certificate, registers the
// minion with its address and certificate fingerprint and stores the
// request as signed; ErrExists if the name is registered.
func (e EnrolTx) Sign(req CertRequest, sign Signer, now time.Time) (CertRequest, error) {
	return signRequest(e.tx, req, sign, now)
}

// signRequest signs req, records the certificate, registers the minion
// and stores the request as signed, in tx.
func signRequest(tx kv.Tx, req CertRequest, sign Signer, now time.Time) (CertRequest, error) {
	if sign == nil {
		return CertRequest{}, errors.New("no signer")
	}
	minions := tx.Bucket(bucketMinions)
	if minions.Get([]byte(req.Name)) != nil {
		return CertRequest{}, fmt.Errorf("minion %s: %w", req.Name, ErrExists)
	}
	signed, err := sign(req)
	if err != nil {
		return CertRequest{}, err
	}
	if err := putCert(tx, signed.Cert); err != nil {
		return CertRequest{}, err
	}
	m := Minion{Name: req.Name, Addr: req.Addr, Fingerprint: signed.Cert.Fingerprint, AddedAt: now.UTC()}
	if err := putJSON(minions, []byte(m.Name), m); err != nil {
		return CertRequest{}, err
	}
	at := now.UTC()
	req.State, req.DecidedAt, req.Serial, req.Cert = StateSigned, &at, signed.Cert.Serial, signed.DER
	reqs, err := tx.CreateBucketIfNotExists(bucketRequests)
	if err != nil {
		return CertRequest{}, err
	}
	return req, putJSON(reqs, []byte(req.Name), req)
}

// Requests returns every certificate request, by name.
func (s *Store) Requests() ([]CertRequest, error) {
	var out []CertRequest
	err := s.view(func(tx kv.Tx) error {
		b := tx.Bucket(bucketRequests)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			var r CertRequest
			if err := getJSON(b, k, &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// SignRequest signs the pending request for name with sign, registers
// the minion, and records the certificate, in one transaction.
func (s *Store) SignRequest(name string, sign Signer, now time.Time) (CertRequest, error) {
	var out CertRequest
	err := s.update(func(tx kv.Tx) error {
		req, err := pending(tx, name)
		if err != nil {
			return err
		}
		out, err = signRequest(tx, req, sign, now)
		return err
	})
	return out, err
}

// RejectRequest marks the pending request for name rejected.
func (s *Store) RejectRequest(name string, now time.Time) (CertRequest, error) {
	var out CertRequest
	err := s.update(func(tx kv.Tx) error {
		req, err := pending(tx, name)
		if err != nil {
			return err
		}
		at := now.UTC()
		req.State, req.DecidedAt = StateRejected, &at
		out = req
		return putJSON(tx.Bucket(bucketRequests), []byte(name), req)
	})
	return out, err
}

func pending(tx kv.Tx, name string) (CertRequest, error) {
	var req CertRequest
	b, err := tx.CreateBucketIfNotExists(bucketRequests)
	if err != nil {
		return req, err
	}
	if b.Get([]byte(name)) == nil {
		return req, fmt.Errorf("%w for %s", ErrNotPending, name)
	}
	if err := getJSON(b, []byte(name), &req); err != nil {
		return req, err
	}
	if req.State != StatePending {
		return req, fmt.Errorf("%w for %s (its request is %s)", ErrNotPending, name, req.State)
	}
	return req, nil
}

func putCert(tx kv.Tx, c Cert) error {
	b, err := tx.CreateBucketIfNotExists(bucketCerts)
	if err != nil {
		return err
	}
	if b.Get([]byte(c.Serial)) != nil {
		return fmt.Errorf("certificate serial %s: %w", c.Serial, ErrExists)
	}
	return putJSON(b, []byte(c.Serial), c)
}

// RecordCert records a certificate the CA issued; ErrExists if its serial
// is recorded already.
func (s *Store) RecordCert(c Cert) error {
	return s.update(func(tx kv.Tx) error { return putCert(tx, c) })
}

// RecordIdentity records c, the certificate of a new overlord identity,
// unless its name is in use: an overlord certificate recorded for the
// same name (compared with certs.SameName: "Ops" is "ops") that is not
// revoked, or one of also (certificates in use that may never have been
// recorded, such as the state directory's own identity) whose serial is
// not recorded revoked. Then it returns ErrNameInUse, saying which
// certificate holds the name and how to revoke it, and records nothing.
// The check and the record are one transaction: of two concurrent
// requests for a name, one fails.
func (s *Store) RecordIdentity(c Cert, also ...Cert) error {
	return s.update(func(tx kv.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketCerts)
		if err != nil {
			return err
		}
		var holder *Cert
		err = b.ForEach(func(k, _ []byte) error {
			var r Cert
			if err := getJSON(b, k, &r); err != nil {
				return err
			}
			if holder == nil && r.Role == c.Role && r.RevokedAt == nil && certs.SameName(r.Name, c.Name) {
				holder = &r
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, a := range also {
			if holder != nil {
				break
			}
			if a.Role != c.Role || !certs.SameName(a.Name, c.Name) {
				continue
			}
			if v := b.Get([]byte(a.Serial)); v != nil {
				var r Cert
				if err := getJSON(b, []byte(a.Serial), &r); err != nil {
					return err
				}
				if r.RevokedAt != nil {
					continue
				}
			}
			holder = &a
		}
		if holder != nil {
			return fmt.Errorf("%w: %q is the name of the %s identity %q (certificate serial %s, issued %s by '%s'), which is not revoked; "+
				"revoke it first with 'overlord ca revoke %s', or choose another name",
				ErrNameInUse, c.Name, holder.Role, holder.Name, holder.Serial, holder.IssuedAt.UTC().Format(time.DateOnly), holder.Source, holder.Name)
		}
		return putCert(tx, c)
	})
}

// ForgetCert removes the record of the certificate with serial, for one
// whose private key was never handed to anyone (its bundle could not be
// written). A certificate revoked, or unknown, is left alone.
func (s *Store) ForgetCert(serial string) error {
	return s.update(func(tx kv.Tx) error {
		b := tx.Bucket(bucketCerts)
		if b == nil || b.Get([]byte(serial)) == nil {
			return nil
		}
		var c Cert
		if err := getJSON(b, []byte(serial), &c); err != nil {
			return err
		}
		if c.RevokedAt != nil {
			return nil
		}
		return b.Delete([]byte(serial))
	})
}

// AddMinionCert registers m and records its certificate c, in one
// transaction; ErrExists if the name is taken.
func (s *Store) AddMinionCert(m Minion, c Cert) error {
	return s.update(func(tx kv.Tx) error {
		b := tx.Bucket(bucketMinions)
		if b.Get([]byte(m.Name)) != nil {
			return fmt.Errorf("minion %s: %w", m.Name, ErrExists)
		}
		if gw := tx.Bucket(bucketGateways); gw != nil && gw.Get([]byte(m.Name)) != nil {
			return fmt.Errorf("%s is a gateway's name: %w", m.Name, ErrExists)
		}
		if err := checkVia(tx, m.Via); err != nil {
			return err
		}
		if err := putCert(tx, c); err != nil {
			return err
		}
		return putJSON(b, []byte(m.Name), m)
	})
}

// Certs returns every recorded certificate, by name and then issue time.
func (s *Store) Certs() ([]Cert, error) {
	var out []Cert
	err := s.view(func(tx kv.Tx) error {
		b := tx.Bucket(bucketCerts)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			var c Cert
			if err := getJSON(b, k, &c); err != nil {
				return err
			}
			out = append(out, c)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].IssuedAt.Before(out[j].IssuedAt)
	})
	return out, err
}
