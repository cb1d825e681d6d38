package overlord

import (
	"crypto/subtle"
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
	SourceGatewayAdd = "gateway add"
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

// Errors of the enrolment policy (enrolRequest); enrolError gives each
// its kind on the wire.
var (
	// errTokenInvalid is returned for a join token that is not in the
	// store, or whose secret does not match.
	errTokenInvalid = errors.New("invalid join token")

	// errTokenExpired is returned for a join token past its expiry.
	errTokenExpired = errors.New("join token expired")

	// errTokenUsedUp is returned for a join token with no uses left.
	errTokenUsedUp = errors.New("join token used up")

	// errRejected is returned for a request an operator rejected.
	errRejected = errors.New("certificate request rejected")

	// errRevoked is returned for a request whose certificate was revoked.
	errRevoked = errors.New("certificate revoked")

	// errConflict is returned for a request for a name that another key
	// has requested or holds.
	errConflict = errors.New("name taken by another key")

	// errTooManyPending is returned when the store holds
	// enrolInput.MaxPending pending requests already.
	errTooManyPending = errors.New("too many pending certificate requests")
)

// enrolInput is one enrolment request as the endpoint received it.
type enrolInput struct {
	Request jobs.CertRequest // Name, Addr, CSR, KeyFingerprint, From
	// TokenID and TokenHash identify the join token that came with the
	// request (TokenHash is the hex SHA-256 of its secret); both empty
	// for a request without one.
	TokenID, TokenHash string
	Now                time.Time
	// MaxPending bounds the pending requests kept (0: no bound).
	MaxPending int
	// Sign signs the request when a valid token came with it.
	Sign jobs.Signer
}

// enrolRequest decides an enrolment request and records it, in one
// transaction of s:
//
//   - a request for a name whose earlier request came from the same key
//     answers as that one did: its certificate if signed, errRejected or
//     errRevoked; if still pending, it is signed now if a valid token
//     came with it;
//   - a request for a name that another key holds a certificate for
//     (not revoked), or that is registered as a minion, is refused
//     (errConflict, jobs.ErrExists); so is one without a token for a
//     name another key has a request pending for. A valid token
//     replaces such a pending request: the token holder is authorised,
//     the other requester was not;
//   - with a token, the token must be valid (errTokenInvalid,
//     errTokenExpired, errTokenUsedUp); one use is counted, the request
//     signed, the certificate recorded and the minion registered with
//     its address and certificate fingerprint. If anything fails,
//     nothing changes, the token's use included;
//   - without a token, the request is kept pending for an operator.
func enrolRequest(s *jobs.Store, in enrolInput) (jobs.CertRequest, error) {
	// A minion polling its pending request needs no write: answer from
	// a read transaction, under the shared lock.
	var (
		out  jobs.CertRequest
		done bool
	)
	err := s.ViewEnrolment(func(tx jobs.EnrolTx) error {
		prev, ok, err := tx.Request(in.Request.Name)
		if err != nil || !ok {
			return err
		}
		if prev.KeyFingerprint == in.Request.KeyFingerprint && prev.State == jobs.StatePending && in.TokenID == "" {
			out, done = prev, true
		}
		return nil
	})
	if err != nil || done {
		return out, err
	}
	err = s.UpdateEnrolment(func(tx jobs.EnrolTx) error {
		req := in.Request
		prev, hasPrev, err := tx.Request(req.Name)
		if err != nil {
			return err
		}
		switch {
		case hasPrev && prev.KeyFingerprint == req.KeyFingerprint:
			switch prev.State {
			case jobs.StateSigned:
				out = prev
				return nil
			case jobs.StateRejected:
				return fmt.Errorf("%w: an operator rejected %s's request from this key", errRejected, req.Name)
			case jobs.StateRevoked:
				return fmt.Errorf("%w: the certificate for %s with this key was revoked; enrol with a new key", errRevoked, req.Name)
			}
			if in.TokenID == "" {
				out = prev
				return nil
			}
			req = prev // keep when it was first requested
			req.Addr = in.Request.Addr
		case hasPrev && prev.State == jobs.StatePending && in.TokenID == "":
			return fmt.Errorf("%w: another key has a request pending for %s (key %.16s…); reject it first: overlord certs reject %s",
				errConflict, req.Name, prev.KeyFingerprint, req.Name)
		case hasPrev && prev.State == jobs.StateSigned:
			return fmt.Errorf("%w: %s holds a certificate for another key (serial %s); revoke it first: overlord ca revoke %s",
				errConflict, req.Name, prev.Serial, req.Name)
		}
		if tx.Registered(req.Name) {
			return fmt.Errorf("minion %s: %w (registered with 'overlord minion add'); remove it first", req.Name, jobs.ErrExists)
		}
		if in.TokenID == "" {
			if in.MaxPending > 0 && tx.PendingRequests() >= in.MaxPending {
				return fmt.Errorf("%w (%d); sign or reject some first", errTooManyPending, in.MaxPending)
			}
			req.State = jobs.StatePending
			req.RequestedAt = in.Now.UTC()
			req.DecidedAt, req.Serial, req.Cert, req.TokenID = nil, "", nil, ""
			out = req
			return tx.PutRequest(req)
		}
		if err := useToken(tx, in.TokenID, in.TokenHash, in.Now); err != nil {
			return err
		}
		if req.RequestedAt.IsZero() || req.State != jobs.StatePending {
			req.RequestedAt = in.Now.UTC()
		}
		req.TokenID = in.TokenID
		out, err = tx.Sign(req, in.Sign, in.Now)
		return err
	})
	if err != nil {
		return jobs.CertRequest{}, err
	}
	return out, nil
}

// useToken checks a join token and counts one use, in tx.
func useToken(tx jobs.EnrolTx, id, hash string, now time.Time) error {
	t, ok, err := tx.Token(id)
	if err != nil {
		return err
	}
	if !ok || subtle.ConstantTimeCompare([]byte(t.Hash), []byte(hash)) != 1 {
		return errTokenInvalid
	}
	switch t.State(now) {
	case "used up":
		return fmt.Errorf("%w (all %d uses taken)", errTokenUsedUp, t.Uses)
	case "expired":
		return fmt.Errorf("%w at %s", errTokenExpired, t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	t.Used++
	return tx.PutToken(t)
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
	in := enrolInput{
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
	r, err := enrolRequest(o.Store, in)
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

// enrolError maps an error of enrolRequest to the wire's kinds.
func enrolError(err error) *enrolment.Error {
	kind := enrolment.KindInternal
	switch {
	case errors.Is(err, errTokenInvalid):
		kind = enrolment.KindTokenInvalid
	case errors.Is(err, errTokenExpired):
		kind = enrolment.KindTokenExpired
	case errors.Is(err, errTokenUsedUp):
		kind = enrolment.KindTokenUsedUp
	case errors.Is(err, errRejected):
		kind = enrolment.KindRejected
	case errors.Is(err, errRevoked):
		kind = enrolment.KindRevoked
	case errors.Is(err, errConflict), errors.Is(err, jobs.ErrExists):
		kind = enrolment.KindConflict
	case errors.Is(err, errTooManyPending), errors.Is(err, jobs.ErrLocked):
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
