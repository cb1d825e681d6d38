package jobs

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

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
	// ErrTokenInvalid is returned for a join token that is not in the
	// store, or whose secret does not match.
	ErrTokenInvalid = errors.New("invalid join token")

	// ErrTokenExpired is returned for a join token past its expiry.
	ErrTokenExpired = errors.New("join token expired")

	// ErrTokenUsedUp is returned for a join token with no uses left.
	ErrTokenUsedUp = errors.New("join token used up")

	// ErrRejected is returned for a request an operator rejected.
	ErrRejected = errors.New("certificate request rejected")

	// ErrRevoked is returned for a request whose certificate was revoked.
	ErrRevoked = errors.New("certificate revoked")

	// ErrConflict is returned for a request for a name that another key
	// has requested or holds.
	ErrConflict = errors.New("name taken by another key")

	// ErrTooManyPending is returned when the store holds
	// EnrolInput.MaxPending pending requests already.
	ErrTooManyPending = errors.New("too many pending certificate requests")

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

// EnrolInput is one enrolment request as the endpoint received it.
type EnrolInput struct {
	Request CertRequest // Name, Addr, CSR, KeyFingerprint, From
	// TokenID and TokenHash identify the join token that came with the
	// request (TokenHash is the hex SHA-256 of its secret); both empty
	// for a request without one.
	TokenID, TokenHash string
	Now                time.Time
	// MaxPending bounds the pending requests kept (0: no bound).
	MaxPending int
	// Sign signs the request when a valid token came with it.
	Sign Signer
}

// AddToken stores a join token.
func (s *Store) AddToken(t Token) error {
	return s.update(func(tx *bolt.Tx) error {
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
	err := s.view(func(tx *bolt.Tx) error {
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
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b == nil || b.Get([]byte(id)) == nil {
			return fmt.Errorf("token %s: %w", id, ErrNotFound)
		}
		return b.Delete([]byte(id))
	})
}

// useToken checks a token and counts one use, in tx.
func useToken(tx *bolt.Tx, id, hash string, now time.Time) error {
	b, err := tx.CreateBucketIfNotExists(bucketTokens)
	if err != nil {
		return err
	}
	var t Token
	if b.Get([]byte(id)) == nil {
		return ErrTokenInvalid
	}
	if err := getJSON(b, []byte(id), &t); err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(hash)) != 1 {
		return ErrTokenInvalid
	}
	switch t.State(now) {
	case "used up":
		return fmt.Errorf("%w (all %d uses taken)", ErrTokenUsedUp, t.Uses)
	case "expired":
		return fmt.Errorf("%w at %s", ErrTokenExpired, t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	t.Used++
	return putJSON(b, []byte(id), t)
}

// Enrol records an enrolment request, in one transaction:
//
//   - a request for a name whose earlier request came from the same key
//     answers as that one did: its certificate if signed, ErrRejected or
//     ErrRevoked; if still pending, it is signed now if a valid token
//     came with it;
//   - a request for a name that another key holds a certificate for
//     (not revoked), or that is registered as a minion, is refused
//     (ErrConflict, ErrExists); so is one without a token for a name
//     another key has a request pending for. A valid token replaces such
//     a pending request: the token holder is authorised, the other
//     requester was not;
//   - with a token, the token must be valid (ErrTokenInvalid,
//     ErrTokenExpired, ErrTokenUsedUp); one use is counted, the request
//     signed, the certificate recorded and the minion registered with
//     its address and certificate fingerprint. If anything fails,
//     nothing changes, the token's use included;
//   - without a token, the request is kept pending for an operator.
func (s *Store) Enrol(in EnrolInput) (CertRequest, error) {
	req := in.Request
	// A minion polling its pending request needs no write: answer from
	// a read transaction, under the shared lock.
	var (
		out  CertRequest
		done bool
	)
	err := s.view(func(tx *bolt.Tx) error {
		reqs := tx.Bucket(bucketRequests)
		if reqs == nil || reqs.Get([]byte(req.Name)) == nil {
			return nil
		}
		var prev CertRequest
		if err := getJSON(reqs, []byte(req.Name), &prev); err != nil {
			return err
		}
		if prev.KeyFingerprint == req.KeyFingerprint && prev.State == StatePending && in.TokenID == "" {
			out, done = prev, true
		}
		return nil
	})
	if err != nil || done {
		return out, err
	}
	err = s.update(func(tx *bolt.Tx) error {
		reqs, err := tx.CreateBucketIfNotExists(bucketRequests)
		if err != nil {
			return err
		}
		name := []byte(req.Name)
		var prev CertRequest
		hasPrev := reqs.Get(name) != nil
		if hasPrev {
			if err := getJSON(reqs, name, &prev); err != nil {
				return err
			}
		}
		switch {
		case hasPrev && prev.KeyFingerprint == req.KeyFingerprint:
			switch prev.State {
			case StateSigned:
				out = prev
				return nil
			case StateRejected:
				return fmt.Errorf("%w: an operator rejected %s's request from this key", ErrRejected, req.Name)
			case StateRevoked:
				return fmt.Errorf("%w: the certificate for %s with this key was revoked; enrol with a new key", ErrRevoked, req.Name)
			}
			if in.TokenID == "" {
				out = prev
				return nil
			}
			req = prev // keep when it was first requested
			req.Addr = in.Request.Addr
		case hasPrev && prev.State == StatePending && in.TokenID == "":
			return fmt.Errorf("%w: another key has a request pending for %s (key %.16s…); reject it first: overlord certs reject %s",
				ErrConflict, req.Name, prev.KeyFingerprint, req.Name)
		case hasPrev && prev.State == StateSigned:
			return fmt.Errorf("%w: %s holds a certificate for another key (serial %s); revoke it first: overlord ca revoke %s",
				ErrConflict, req.Name, prev.Serial, req.Name)
		}
		if tx.Bucket(bucketMinions).Get(name) != nil {
			return fmt.Errorf("minion %s: %w (registered with 'overlord minion add'); remove it first", req.Name, ErrExists)
		}
		if in.TokenID == "" {
			if in.MaxPending > 0 && countPending(reqs) >= in.MaxPending {
				return fmt.Errorf("%w (%d); sign or reject some first", ErrTooManyPending, in.MaxPending)
			}
			req.State = StatePending
			req.RequestedAt = in.Now.UTC()
			req.DecidedAt, req.Serial, req.Cert, req.TokenID = nil, "", nil, ""
			out = req
			return putJSON(reqs, name, req)
		}
		if err := useToken(tx, in.TokenID, in.TokenHash, in.Now); err != nil {
			return err
		}
		if req.RequestedAt.IsZero() || req.State != StatePending {
			req.RequestedAt = in.Now.UTC()
		}
		req.TokenID = in.TokenID
		if out, err = signRequest(tx, req, in.Sign, in.Now); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return CertRequest{}, err
	}
	return out, nil
}

func countPending(reqs *bolt.Bucket) int {
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

// signRequest signs req, records the certificate, registers the minion
// and stores the request as signed, in tx.
func signRequest(tx *bolt.Tx, req CertRequest, sign Signer, now time.Time) (CertRequest, error) {
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
	err := s.view(func(tx *bolt.Tx) error {
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
	err := s.update(func(tx *bolt.Tx) error {
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
	err := s.update(func(tx *bolt.Tx) error {
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

func pending(tx *bolt.Tx, name string) (CertRequest, error) {
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

func putCert(tx *bolt.Tx, c Cert) error {
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
	return s.update(func(tx *bolt.Tx) error { return putCert(tx, c) })
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
	return s.update(func(tx *bolt.Tx) error {
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
	return s.update(func(tx *bolt.Tx) error {
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
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMinions)
		if b.Get([]byte(m.Name)) != nil {
			return fmt.Errorf("minion %s: %w", m.Name, ErrExists)
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
	err := s.view(func(tx *bolt.Tx) error {
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
