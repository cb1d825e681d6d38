package overlord

import (
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/enrolment"
	"github.com/overlordhq/overlord/jobs"
)

// Bounds of join tokens and of the requests the endpoint keeps.
const (
	DefaultTokenTTL  = 24 * time.Hour
	MaxTokenTTL      = 366 * 24 * time.Hour
	MaxTokenUses     = 100000
	MaxPendingEnrols = 1000
)

// Where a recorded certificate came from (jobs.Cert.Source).
const (
	SourceCAInit     = "ca init"
	SourceCAClient   = "ca client"
	SourceMinionAdd  = "minion add"
	SourceEnrolToken = "enrol (token)"
	SourceCertsSign  = "certs sign"
	SourceCAFile     = "ca revoke --cert"
)

// certRecord describes a certificate the CA issued, for overlord.db.
func certRecord(c *x509.Certificate, source string, now time.Time) jobs.Cert {
	return jobs.Cert{
		Serial:         certs.Serial(c),
		Name:           c.Subject.CommonName,
		Role:           string(certs.RoleOf(c)),
		Fingerprint:    certs.Fingerprint(c),
		KeyFingerprint: certs.KeyFingerprint(c.PublicKey),
		Source:         source,
		IssuedAt:       now.UTC(),
		NotAfter:       c.NotAfter.UTC(),
	}
}

// CACert reads the CA certificate (not its key).
func (o *Overlord) CACert() (*x509.Certificate, error) {
	c, err := certs.ReadCert(filepath.Join(o.Dir, certs.CACertFile))
	if err != nil {
		return nil, fmt.Errorf("no CA in %s: run 'overlord ca init' first (%w)", o.Dir, err)
	}
	return c, nil
}

// CreateToken makes a join token valid for ttl and uses enrolments and
// stores the hash of its secret.
func (o *Overlord) CreateToken(ttl time.Duration, uses int, now time.Time) (enrolment.Token, jobs.Token, error) {
	if ttl <= 0 || ttl > MaxTokenTTL {
		return enrolment.Token{}, jobs.Token{}, fmt.Errorf("--ttl must be more than 0 and at most %s, not %s", MaxTokenTTL, ttl)
	}
	if uses < 1 || uses > MaxTokenUses {
		return enrolment.Token{}, jobs.Token{}, fmt.Errorf("--uses must be 1 to %d, not %d", MaxTokenUses, uses)
	}
	ca, err := o.CACert()
	if err != nil {
		return enrolment.Token{}, jobs.Token{}, err
	}
	t, err := enrolment.NewToken(certs.Fingerprint(ca))
	if err != nil {
		return enrolment.Token{}, jobs.Token{}, err
	}
	rec := jobs.Token{ID: t.ID, Hash: t.Hash(), CreatedAt: now.UTC(), ExpiresAt: now.Add(ttl).UTC(), Uses: uses}
	if err := o.Store.AddToken(rec); err != nil {
		return enrolment.Token{}, jobs.Token{}, err
	}
	return t, rec, nil
}

// signer signs requests with ca, recording source.
func signer(ca *certs.Authority, source string, now time.Time) jobs.Signer {
	return func(r jobs.CertRequest) (jobs.Signed, error) {
		cert, err := ca.SignCSR(r.CSR, r.Name)
		if err != nil {
			return jobs.Signed{}, err
		}
		return jobs.Signed{Cert: certRecord(cert, source, now), DER: cert.Raw}, nil
	}
}

// Enrol takes one enrolment request, received from the network address
// from, and answers it: signed at once with a valid token, else pending
// (or the state an earlier request from the same key reached). Every
// error is an *enrolment.Error with a stable kind.
func (o *Overlord) Enrol(ca *certs.Authority, req enrolment.Request, from string, now time.Time) (*enrolment.Reply, error) {
	if err := certs.CheckName(req.Name); err != nil {
		return nil, enrolment.Errorf(enrolment.KindBadRequest, "%v", err)
	}
	if len(req.Addr) > 300 {
		return nil, enrolment.Errorf(enrolment.KindBadRequest, "address too long")
	}
	if err := CheckAddr(req.Addr); err != nil {
		return nil, enrolment.Errorf(enrolment.KindBadRequest, "%v", err)
	}
	der, err := certs.DecodeCSR([]byte(req.CSR))
	if err != nil {
		return nil, enrolment.Errorf(enrolment.KindBadRequest, "%v", err)
	}
	csr, err := certs.CheckCSR(der, req.Name)
	if err != nil {
		return nil, enrolment.Errorf(enrolment.KindBadRequest, "%v", err)
	}
	in := jobs.EnrolInput{
		Request: jobs.CertRequest{
			Name: req.Name, Addr: req.Addr, CSR: der, From: from,
			KeyFingerprint: certs.KeyFingerprint(csr.PublicKey),
		},
		Now:        now,
		MaxPending: MaxPendingEnrols,
		Sign:       signer(ca, SourceEnrolToken, now),
	}
	if req.Token != "" {
		t, err := enrolment.ParseToken(req.Token)
		if err != nil {
			return nil, enrolment.Errorf(enrolment.KindTokenInvalid, "%v", err)
		}
		if t.CAFingerprint != certs.Fingerprint(ca.Cert) {
			return nil, enrolment.Errorf(enrolment.KindTokenInvalid, "invalid join token: it is for another CA")
		}
		in.TokenID, in.TokenHash = t.ID, t.Hash()
	}
	r, err := o.Store.Enrol(in)
	if err != nil {
		return nil, enrolError(err)
	}
	reply := &enrolment.Reply{State: r.State, Name: r.Name, KeyFingerprint: r.KeyFingerprint}
	switch r.State {
	case jobs.StateSigned:
		cert, err := x509.ParseCertificate(r.Cert)
		if err != nil {
			return nil, enrolment.Errorf(enrolment.KindInternal, "stored certificate for %s: %v", r.Name, err)
		}
		reply.Certificate = string(certs.EncodeCert(cert))
		reply.CA = string(certs.EncodeCert(ca.Cert))
		reply.Message = fmt.Sprintf("signed; %s registered at %s", r.Name, r.Addr)
	case jobs.StatePending:
		reply.Message = fmt.Sprintf("pending: an operator must run 'overlord certs sign %s' (key fingerprint %s)", r.Name, r.KeyFingerprint)
	}
	return reply, nil
}

// enrolError maps a store error to the wire's kinds.
func enrolError(err error) *enrolment.Error {
	kind := enrolment.KindInternal
	switch {
	case errors.Is(err, jobs.ErrTokenInvalid):
		kind = enrolment.KindTokenInvalid
	case errors.Is(err, jobs.ErrTokenExpired):
		kind = enrolment.KindTokenExpired
	case errors.Is(err, jobs.ErrTokenUsedUp):
		kind = enrolment.KindTokenUsedUp
	case errors.Is(err, jobs.ErrRejected):
		kind = enrolment.KindRejected
	case errors.Is(err, jobs.ErrRevoked):
		kind = enrolment.KindRevoked
	case errors.Is(err, jobs.ErrConflict), errors.Is(err, jobs.ErrExists):
		kind = enrolment.KindConflict
	case errors.Is(err, jobs.ErrTooManyPending), errors.Is(err, jobs.ErrLocked):
		kind = enrolment.KindBusy
	case errors.Is(err, certs.ErrBadCSR), errors.Is(err, certs.ErrBadName):
		kind = enrolment.KindBadRequest
	}
	return enrolment.Errorf(kind, "%v", err)
}

// SignRequest signs the pending request for name and registers the
// minion.
func (o *Overlord) SignRequest(name string, now time.Time) (jobs.CertRequest, error) {
	ca, err := o.Authority()
	if err != nil {
		return jobs.CertRequest{}, err
	}
	return o.Store.SignRequest(name, signer(ca, SourceCertsSign, now), now)
}

// RejectRequest rejects the pending request for name.
func (o *Overlord) RejectRequest(name string, now time.Time) (jobs.CertRequest, error) {
	return o.Store.RejectRequest(name, now)
}

// CertEntry is one line of `overlord certs list`: a certificate the CA
// issued, or a request that has none (pending or rejected).
type CertEntry struct {
	Name           string     `json:"name"`
	Role           string     `json:"role"`
	State          string     `json:"state"` // pending, signed, rejected, revoked
	Serial         string     `json:"serial,omitempty"`
	Fingerprint    string     `json:"fingerprint,omitempty"` // the certificate's SHA-256
	KeyFingerprint string     `json:"key_fingerprint"`       // its public key's SHA-256
	Addr           string     `json:"addr,omitempty"`
	Source         string     `json:"source,omitempty"`
	From           string     `json:"from,omitempty"`
	RequestedAt    *time.Time `json:"requested_at,omitempty"`
	IssuedAt       *time.Time `json:"issued_at,omitempty"`
	NotAfter       *time.Time `json:"not_after,omitempty"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
	RejectedAt     *time.Time `json:"rejected_at,omitempty"`
}

// Certs lists the certificates the CA issued (signed or revoked) and the
// requests without one (pending or rejected), by name.
func (o *Overlord) Certs() ([]CertEntry, error) {
	cs, err := o.Store.Certs()
	if err != nil {
		return nil, err
	}
	reqs, err := o.Store.Requests()
	if err != nil {
		return nil, err
	}
	ms, err := o.Store.Minions()
	if err != nil {
		return nil, err
	}
	pinned := make(map[string]string, len(ms)) // fingerprint -> address
	for _, m := range ms {
		pinned[m.Fingerprint] = m.Addr
	}
	bySerial := make(map[string]jobs.CertRequest, len(reqs))
	out := []CertEntry{}
	for _, r := range reqs {
		switch r.State {
		case jobs.StatePending, jobs.StateRejected:
			e := CertEntry{Name: r.Name, Role: string(certs.RoleMinion), State: r.State, KeyFingerprint: r.KeyFingerprint,
				Addr: r.Addr, From: r.From, RequestedAt: ptr(r.RequestedAt)}
			if r.State == jobs.StateRejected {
				e.RejectedAt = r.DecidedAt
			}
			out = append(out, e)
		default:
			bySerial[r.Serial] = r
		}
	}
	for _, c := range cs {
		e := CertEntry{Name: c.Name, Role: c.Role, State: c.State(), Serial: c.Serial, Fingerprint: c.Fingerprint,
			KeyFingerprint: c.KeyFingerprint, Source: c.Source, IssuedAt: ptr(c.IssuedAt), NotAfter: ptr(c.NotAfter), RevokedAt: c.RevokedAt}
		if r, ok := bySerial[c.Serial]; ok {
			e.Addr, e.From, e.RequestedAt = r.Addr, r.From, ptr(r.RequestedAt)
		}
		if addr, ok := pinned[c.Fingerprint]; ok {
			e.Addr = addr // where it is registered now
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].when().Before(out[j].when())
	})
	return out, nil
}

func (e CertEntry) when() time.Time {
	for _, t := range []*time.Time{e.IssuedAt, e.RequestedAt} {
		if t != nil {
			return *t
		}
	}
	return time.Time{}
}

func ptr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
