package jobs_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/jobs/jobstest"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// fakeSigner signs by counting: serials s1, s2, ...
type fakeSigner struct {
	mu    sync.Mutex
	n     int
	fail  error
	names []string
}

func (f *fakeSigner) sign(r jobs.CertRequest) (jobs.Signed, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return jobs.Signed{}, f.fail
	}
	f.n++
	f.names = append(f.names, r.Name)
	serial := "5" + strconv.Itoa(f.n)
	return jobs.Signed{
		Cert: jobs.Cert{Serial: serial, Name: r.Name, Role: "minion", Fingerprint: "cert-" + serial,
			KeyFingerprint: r.KeyFingerprint, Source: "test", IssuedAt: t0, NotAfter: t0.Add(24 * time.Hour)},
		DER: []byte("der-" + serial),
	}, nil
}

func request(name, key string) jobs.CertRequest {
	return jobs.CertRequest{Name: name, Addr: "127.0.0.1:5000", CSR: []byte("csr-" + key), KeyFingerprint: key, From: "127.0.0.1:40000"}
}

func addToken(t *testing.T, s *jobs.Store, id, secret string, uses int, ttl time.Duration) {
	t.Helper()
	if err := s.AddToken(jobs.Token{ID: id, Hash: hash(secret), CreatedAt: t0, ExpiresAt: t0.Add(ttl), Uses: uses}); err != nil {
		t.Fatal(err)
	}
}

func TestTokens(t *testing.T) {
	s := jobstest.New(t)
	f := &fakeSigner{}
	addToken(t, s, "t1", "secret1", 2, time.Hour)
	if err := s.AddToken(jobs.Token{ID: "t1"}); !errors.Is(err, jobs.ErrExists) {
		t.Errorf("a second t1: %v, want ErrExists", err)
	}
	enrol := func(name, id, secret string, at time.Time) error {
		_, err := s.Enrol(jobs.EnrolInput{Request: request(name, "key-"+name), TokenID: id, TokenHash: hash(secret), Now: at, Sign: f.sign})
		return err
	}
	tests := []struct {
		name, id, secret string
		at               time.Time
		want             error
	}{
		{"web1", "t1", "wrong", t0, jobs.ErrTokenInvalid},
		{"web1", "nosuch", "secret1", t0, jobs.ErrTokenInvalid},
		{"web1", "t1", "secret1", t0.Add(time.Hour), jobs.ErrTokenExpired},
		{"web1", "t1", "secret1", t0, nil},
		{"web2", "t1", "secret1", t0.Add(time.Minute), nil},
		{"web3", "t1", "secret1", t0.Add(time.Minute), jobs.ErrTokenUsedUp},
	}
	for _, tt := range tests {
		if err := enrol(tt.name, tt.id, tt.secret, tt.at); !errors.Is(err, tt.want) {
			t.Errorf("enrol %s with %s/%s at %s: %v, want %v", tt.name, tt.id, tt.secret, tt.at.Format(time.Kitchen), err, tt.want)
		}
	}
	ts, err := s.Tokens()
	if err != nil || len(ts) != 1 || ts[0].Used != 2 || ts[0].State(t0) != "used up" {
		t.Fatalf("Tokens() = %+v, %v; want t1 used 2 times", ts, err)
	}
	// A failure to sign counts no use and registers nothing.
	addToken(t, s, "t2", "secret2", 1, time.Hour)
	f.fail = errors.New("no CA")
	if err := enrol("web9", "t2", "secret2", t0); err == nil {
		t.Fatal("enrolled with a failing signer")
	}
	f.fail = nil
	ts, _ = s.Tokens()
	if ts[1].Used != 0 {
		t.Errorf("t2 used %d times after a failed signing, want 0", ts[1].Used)
	}
	if ms, _ := s.Minions(); len(ms) != 2 {
		t.Errorf("registry %+v, want web1 and web2", ms)
	}
	if err := s.DeleteToken("t2"); err != nil {
		t.Fatal(err)
	}
	if err := enrol("web9", "t2", "secret2", t0); !errors.Is(err, jobs.ErrTokenInvalid) {
		t.Errorf("a deleted token: %v, want ErrTokenInvalid", err)
	}
	if err := s.DeleteToken("t2"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("deleting twice: %v", err)
	}
}

func TestTokenState(t *testing.T) {
	tok := jobs.Token{ExpiresAt: t0, Uses: 2, Used: 1}
	for at, want := range map[time.Time]string{t0.Add(-time.Second): "valid", t0: "expired"} {
		if got := tok.State(at); got != want {
			t.Errorf("State(%s) = %s, want %s", at, got, want)
		}
	}
	tok.Used = 2
	if got := tok.State(t0.Add(-time.Hour)); got != "used up" {
		t.Errorf("State = %s, want used up", got)
	}
}

// TestTokenUsesAtomic: many minions racing for a token of 3 uses, from
// stores of their own on the same file as separate processes would be:
// exactly 3 enrol.
func TestTokenUsesAtomic(t *testing.T) {
	s := jobstest.New(t)
	addToken(t, s, "t1", "secret", 3, time.Hour)
	f := &fakeSigner{}
	const n = 12
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			other := jobs.New(s.Path(), jobstest.LockTimeout)
			name := fmt.Sprintf("web%d", i)
			_, errs[i] = other.Enrol(jobs.EnrolInput{Request: request(name, "key-"+name), TokenID: "t1", TokenHash: hash("secret"), Now: t0, Sign: f.sign})
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, jobs.ErrTokenUsedUp):
			t.Errorf("web%d: %v", i, err)
		}
	}
	ms, _ := s.Minions()
	if ok != 3 || f.n != 3 || len(ms) != 3 {
		t.Fatalf("%d enrolled, %d signed, %d registered; want 3 each", ok, f.n, len(ms))
	}
}

func TestEnrolWithoutToken(t *testing.T) {
	s := jobstest.New(t)
	f := &fakeSigner{}
	enrol := func(r jobs.CertRequest) (jobs.CertRequest, error) {
		return s.Enrol(jobs.EnrolInput{Request: r, Now: t0, MaxPending: 3, Sign: f.sign})
	}
	r, err := enrol(request("web1", "k1"))
	if err != nil || r.State != jobs.StatePending || !r.RequestedAt.Equal(t0) {
		t.Fatalf("first request: %+v, %v; want pending", r, err)
	}
	// The same key asking again (polling) gets the same answer.
	if r, err = enrol(request("web1", "k1")); err != nil || r.State != jobs.StatePending {
		t.Fatalf("poll: %+v, %v", r, err)
	}
	// Another key for the name is refused while the first is pending.
	if _, err := enrol(request("web1", "k2")); !errors.Is(err, jobs.ErrConflict) {
		t.Errorf("another key: %v, want ErrConflict", err)
	}
	if f.n != 0 {
		t.Fatal("signed without a token or an operator")
	}
	// The operator signs: registered at the address asked for.
	if r, err = s.SignRequest("web1", f.sign, t0.Add(time.Minute)); err != nil || r.State != jobs.StateSigned || r.Serial != "51" {
		t.Fatalf("SignRequest = %+v, %v", r, err)
	}
	ms, _ := s.Minions()
	if len(ms) != 1 || ms[0].Name != "web1" || ms[0].Addr != "127.0.0.1:5000" || ms[0].Fingerprint != "cert-51" {
		t.Errorf("registry %+v", ms)
	}
	if r, err = enrol(request("web1", "k1")); err != nil || r.State != jobs.StateSigned || string(r.Cert) != "der-51" {
		t.Errorf("poll after signing: %+v, %v; want the certificate", r, err)
	}
	if _, err := s.SignRequest("web1", f.sign, t0); !errors.Is(err, jobs.ErrNotPending) {
		t.Errorf("signing twice: %v", err)
	}
	if _, err := enrol(request("web1", "k3")); !errors.Is(err, jobs.ErrConflict) {
		t.Errorf("another key for a signed name: %v, want ErrConflict", err)
	}

	// Rejected: the same key is told so; another key may ask again.
	if _, err := enrol(request("web2", "k4")); err != nil {
		t.Fatal(err)
	}
	if r, err = s.RejectRequest("web2", t0); err != nil || r.State != jobs.StateRejected {
		t.Fatalf("RejectRequest = %+v, %v", r, err)
	}
	if _, err := enrol(request("web2", "k4")); !errors.Is(err, jobs.ErrRejected) {
		t.Errorf("poll after rejection: %v, want ErrRejected", err)
	}
	if _, err := s.RejectRequest("web2", t0); !errors.Is(err, jobs.ErrNotPending) {
		t.Errorf("rejecting twice: %v", err)
	}
	if r, err = enrol(request("web2", "k5")); err != nil || r.State != jobs.StatePending {
		t.Errorf("a new key after a rejection: %+v, %v", r, err)
	}
	if _, err := s.SignRequest("nosuch", f.sign, t0); !errors.Is(err, jobs.ErrNotPending) {
		t.Errorf("signing a name with no request: %v", err)
	}

	// A name registered with minion add cannot be taken.
	if err := s.AddMinion(jobs.Minion{Name: "db1", Addr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := enrol(request("db1", "k6")); !errors.Is(err, jobs.ErrExists) {
		t.Errorf("a registered name: %v, want ErrExists", err)
	}

	// At most MaxPending requests wait.
	for i := range 2 {
		if _, err := enrol(request(fmt.Sprintf("q%d", i), fmt.Sprintf("kq%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := enrol(request("q9", "kq9")); !errors.Is(err, jobs.ErrTooManyPending) {
		t.Errorf("a fourth pending request: %v, want ErrTooManyPending", err)
	}
	reqs, err := s.Requests()
	if err != nil || len(reqs) != 4 {
		t.Errorf("Requests() = %d, %v; want 4", len(reqs), err)
	}
}

func TestEnrolTokenReplacesPending(t *testing.T) {
	s := jobstest.New(t)
	f := &fakeSigner{}
	addToken(t, s, "t1", "secret", 5, time.Hour)
	// Someone asks for web1 first, without a token.
	if _, err := s.Enrol(jobs.EnrolInput{Request: request("web1", "intruder"), Now: t0}); err != nil {
		t.Fatal(err)
	}
	// A wrong token changes nothing.
	if _, err := s.Enrol(jobs.EnrolInput{Request: request("web1", "real"), TokenID: "t1", TokenHash: hash("bad"), Now: t0, Sign: f.sign}); !errors.Is(err, jobs.ErrTokenInvalid) {
		t.Fatalf("bad token: %v", err)
	}
	// The token holder wins.
	r, err := s.Enrol(jobs.EnrolInput{Request: request("web1", "real"), TokenID: "t1", TokenHash: hash("secret"), Now: t0, Sign: f.sign})
	if err != nil || r.State != jobs.StateSigned || r.KeyFingerprint != "real" || r.TokenID != "t1" {
		t.Fatalf("token enrolment over a pending request: %+v, %v", r, err)
	}
	if _, err := s.Enrol(jobs.EnrolInput{Request: request("web1", "intruder"), Now: t0}); !errors.Is(err, jobs.ErrConflict) {
		t.Errorf("the intruder polling: %v, want ErrConflict", err)
	}
	// A pending request of the same key is signed when it comes back with a token.
	if _, err := s.Enrol(jobs.EnrolInput{Request: request("web2", "k2"), Now: t0}); err != nil {
		t.Fatal(err)
	}
	r, err = s.Enrol(jobs.EnrolInput{Request: request("web2", "k2"), TokenID: "t1", TokenHash: hash("secret"), Now: t0.Add(time.Minute), Sign: f.sign})
	if err != nil || r.State != jobs.StateSigned || !r.RequestedAt.Equal(t0) {
		t.Fatalf("pending, then a token: %+v, %v", r, err)
	}
	// Asking again with the token after it is signed uses no token.
	if _, err := s.Enrol(jobs.EnrolInput{Request: request("web2", "k2"), TokenID: "t1", TokenHash: hash("secret"), Now: t0, Sign: f.sign}); err != nil {
		t.Fatal(err)
	}
	ts, _ := s.Tokens()
	if ts[0].Used != 2 {
		t.Errorf("token used %d times, want 2", ts[0].Used)
	}
}

func TestRevoke(t *testing.T) {
	s := jobstest.New(t)
	f := &fakeSigner{}
	addToken(t, s, "t1", "secret", 5, time.Hour)
	for _, n := range []string{"web1", "web2"} {
		if _, err := s.Enrol(jobs.EnrolInput{Request: request(n, "k-"+n), TokenID: "t1", TokenHash: hash("secret"), Now: t0, Sign: f.sign}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddToGroup("web", []string{"web1", "web2"}); err != nil {
		t.Fatal(err)
	}
	bot := jobs.Cert{Serial: "b1", Name: "ci-bot", Role: "overlord", Fingerprint: "fb1", IssuedAt: t0, NotAfter: t0.Add(time.Hour)}
	old := jobs.Cert{Serial: "b0", Name: "old", Role: "overlord", Fingerprint: "fb0", IssuedAt: t0, NotAfter: t0.Add(-time.Hour), RevokedAt: &t0}
	for _, c := range []jobs.Cert{bot, old} {
		if err := s.RecordCert(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RecordCert(bot); !errors.Is(err, jobs.ErrExists) {
		t.Errorf("recording twice: %v", err)
	}
	if n, der, err := s.CRL(); n != 0 || der != nil || err != nil {
		t.Fatalf("CRL before any revocation: %d, %q, %v", n, der, err)
	}
	var lists [][]string
	makeCRL := func(number int64, revoked []jobs.Cert) ([]byte, error) {
		var serials []string
		for _, c := range revoked {
			serials = append(serials, c.Serial)
		}
		slices.Sort(serials)
		lists = append(lists, serials)
		return []byte(fmt.Sprintf("crl %d %v", number, serials)), nil
	}
	revoked, n, err := s.Revoke([]string{"b1"}, t0.Add(time.Minute), makeCRL)
	if err != nil || n != 1 || len(revoked) != 1 || revoked[0].RevokedAt == nil {
		t.Fatalf("Revoke(b1) = %+v, %d, %v", revoked, n, err)
	}
	// web1's certificate (serial 51): dropped from the registry and its
	// group; its request marked revoked. The expired b0 leaves the list.
	if revoked, n, err = s.Revoke([]string{"51"}, t0.Add(2*time.Minute), makeCRL); err != nil || n != 2 || len(revoked) != 1 {
		t.Fatalf("Revoke(51) = %+v, %d, %v", revoked, n, err)
	}
	if !slices.Equal(lists[1], []string{"51", "b1"}) {
		t.Errorf("CRL 2 lists %v, want 51 and b1", lists[1])
	}
	inv, _ := s.Inventory()
	if len(inv.Minions) != 1 || inv.Minions[0].Name != "web2" || !slices.Equal(inv.Groups["web"], []string{"web2"}) {
		t.Errorf("registry %+v, groups %v; want web2 only", inv.Minions, inv.Groups)
	}
	reqs, _ := s.Requests()
	if reqs[0].Name != "web1" || reqs[0].State != jobs.StateRevoked {
		t.Errorf("web1's request: %+v, want revoked", reqs[0])
	}
	if _, err := s.Enrol(jobs.EnrolInput{Request: request("web1", "k-web1"), Now: t0}); !errors.Is(err, jobs.ErrRevoked) {
		t.Errorf("web1 asking again with the revoked key: %v, want ErrRevoked", err)
	}
	if r, err := s.Enrol(jobs.EnrolInput{Request: request("web1", "new"), Now: t0}); err != nil || r.State != jobs.StatePending {
		t.Errorf("web1 with a new key: %+v, %v; want pending", r, err)
	}
	// Revoking again changes nothing, not even the number.
	if revoked, n, err = s.Revoke([]string{"51"}, t0, makeCRL); err != nil || n != 2 || len(revoked) != 0 || len(lists) != 2 {
		t.Errorf("revoking twice: %+v, %d, %v", revoked, n, err)
	}
	if _, _, err := s.Revoke([]string{"zz"}, t0, makeCRL); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("an unknown serial: %v", err)
	}
	// A failure to sign the list revokes nothing.
	if _, _, err := s.Revoke([]string{"52"}, t0, func(int64, []jobs.Cert) ([]byte, error) { return nil, errors.New("no CA") }); err == nil {
		t.Fatal("revoked without a list")
	}
	n, der, err := s.CRL()
	if err != nil || n != 2 || string(der) != "crl 2 [51 b1]" {
		t.Errorf("CRL() = %d, %q, %v", n, der, err)
	}
	certs, _ := s.Certs()
	for _, c := range certs {
		if c.Serial == "52" && c.State() != jobs.StateSigned {
			t.Errorf("52 is %s after a failed revocation", c.State())
		}
	}
}

// TestEnrolOldStore: a store made before the enrolment buckets existed
// reads as empty and gains them at the first write.
func TestEnrolOldStore(t *testing.T) {
	s := jobs.New(filepath.Join(t.TempDir(), "overlord.db"), jobstest.LockTimeout)
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(s.Path(), 0o600, &bolt.Options{Timeout: jobstest.LockTimeout})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range []string{"tokens", "requests", "certs", "crl"} {
			if err := tx.DeleteBucket([]byte(b)); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if ts, err := s.Tokens(); err != nil || len(ts) != 0 {
		t.Errorf("Tokens() = %v, %v", ts, err)
	}
	if cs, err := s.Certs(); err != nil || len(cs) != 0 {
		t.Errorf("Certs() = %v, %v", cs, err)
	}
	if rs, err := s.Requests(); err != nil || len(rs) != 0 {
		t.Errorf("Requests() = %v, %v", rs, err)
	}
	if n, _, err := s.CRL(); err != nil || n != 0 {
		t.Errorf("CRL() = %d, %v", n, err)
	}
	if r, err := s.Enrol(jobs.EnrolInput{Request: request("web1", "k1"), Now: t0}); err != nil || r.State != jobs.StatePending {
		t.Errorf("Enrol = %+v, %v", r, err)
	}
	jobstest.Check(t, s.Path())
}

// TestRecordIdentityNameInUse: of concurrent requests for one identity
// name in different cases, one is recorded; a revoked holder frees the
// name; a minion of the same name does not hold it; a certificate given
// as in use (never recorded) holds it unless recorded revoked.
func TestRecordIdentityNameInUse(t *testing.T) {
	s := jobstest.New(t)
	id := func(serial, name string) jobs.Cert {
		return jobs.Cert{Serial: serial, Name: name, Role: "overlord", Source: "ca client", IssuedAt: t0, NotAfter: t0.Add(time.Hour)}
	}
	names := []string{"ops", "OPS", "Ops", "oPs", "opS", "OpS"}
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			other := jobs.New(s.Path(), jobstest.LockTimeout)
			errs[i] = other.RecordIdentity(id(fmt.Sprintf("a%d", i), name))
		})
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, jobs.ErrNameInUse):
			t.Errorf("%s: %v", names[i], err)
		}
	}
	if cs, _ := s.Certs(); ok != 1 || len(cs) != 1 {
		t.Fatalf("%d recorded, %d certificates; want 1", ok, len(cs))
	}

	// A minion's certificate is another role: it holds no identity name.
	if err := s.RecordCert(jobs.Cert{Serial: "m1", Name: "web1", Role: "minion", IssuedAt: t0, NotAfter: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordIdentity(id("b1", "WEB1")); err != nil {
		t.Errorf("identity named like a minion: %v", err)
	}

	// The state directory's own identity, never recorded, holds its name.
	own := id("own", "op")
	if err := s.RecordIdentity(id("c1", "OP"), own); !errors.Is(err, jobs.ErrNameInUse) {
		t.Errorf("the own identity's name: %v, want ErrNameInUse", err)
	}
	if err := s.RecordCert(own); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Revoke([]string{"own"}, t0, func(int64, []jobs.Cert) ([]byte, error) { return []byte("crl"), nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordIdentity(id("c2", "OP"), own); err != nil {
		t.Errorf("the own identity's name once it is revoked: %v", err)
	}

	// ForgetCert drops a record whose key nobody got, freeing the name.
	if err := s.ForgetCert("c2"); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordIdentity(id("c3", "op")); err != nil {
		t.Errorf("after ForgetCert: %v", err)
	}
}
