package overlord

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/jobs/jobstest"
)

// Tests of the enrolment policy (enrolRequest) on a store, with a fake
// signer.

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func TestEnrolTokens(t *testing.T) {
	s := jobstest.New(t)
	f := &jobstest.Signer{At: t0}
	jobstest.AddToken(t, s, "t1", "secret1", 2, t0, time.Hour)
	enrol := func(name, id, secret string, at time.Time) error {
		_, err := enrolRequest(s, enrolInput{Request: jobstest.Request(name, "key-"+name), TokenID: id, TokenHash: jobstest.TokenHash(secret), Now: at, Sign: f.Sign})
		return err
	}
	tests := []struct {
		name, id, secret string
		at               time.Time
		want             error
	}{
		{"web1", "t1", "wrong", t0, errTokenInvalid},
		{"web1", "nosuch", "secret1", t0, errTokenInvalid},
		{"web1", "t1", "secret1", t0.Add(time.Hour), errTokenExpired},
		{"web1", "t1", "secret1", t0, nil},
		{"web2", "t1", "secret1", t0.Add(time.Minute), nil},
		{"web3", "t1", "secret1", t0.Add(time.Minute), errTokenUsedUp},
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
	jobstest.AddToken(t, s, "t2", "secret2", 1, t0, time.Hour)
	f.Fail = errors.New("no CA")
	if err := enrol("web9", "t2", "secret2", t0); err == nil {
		t.Fatal("enrolled with a failing signer")
	}
	f.Fail = nil
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
	if err := enrol("web9", "t2", "secret2", t0); !errors.Is(err, errTokenInvalid) {
		t.Errorf("a deleted token: %v, want errTokenInvalid", err)
	}
}

// TestTokenUsesAtomic: many minions racing for a token of 3 uses, from
// stores of their own on the same file as separate processes would be:
// exactly 3 enrol.
func TestTokenUsesAtomic(t *testing.T) {
	s := jobstest.New(t)
	jobstest.AddToken(t, s, "t1", "secret", 3, t0, time.Hour)
	f := &jobstest.Signer{At: t0}
	const n = 12
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			other := jobs.New(s.Path(), jobstest.LockTimeout)
			name := fmt.Sprintf("web%d", i)
			_, errs[i] = enrolRequest(other, enrolInput{Request: jobstest.Request(name, "key-"+name), TokenID: "t1", TokenHash: jobstest.TokenHash("secret"), Now: t0, Sign: f.Sign})
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, errTokenUsedUp):
			t.Errorf("web%d: %v", i, err)
		}
	}
	ms, _ := s.Minions()
	if ok != 3 || f.N != 3 || len(ms) != 3 {
		t.Fatalf("%d enrolled, %d signed, %d registered; want 3 each", ok, f.N, len(ms))
	}
}

func TestEnrolWithoutToken(t *testing.T) {
	s := jobstest.New(t)
	f := &jobstest.Signer{At: t0}
	enrol := func(r jobs.CertRequest) (jobs.CertRequest, error) {
		return enrolRequest(s, enrolInput{Request: r, Now: t0, MaxPending: 3, Sign: f.Sign})
	}
	r, err := enrol(jobstest.Request("web1", "k1"))
	if err != nil || r.State != jobs.StatePending || !r.RequestedAt.Equal(t0) {
		t.Fatalf("first request: %+v, %v; want pending", r, err)
	}
	// The same key asking again (polling) gets the same answer.
	if r, err = enrol(jobstest.Request("web1", "k1")); err != nil || r.State != jobs.StatePending {
		t.Fatalf("poll: %+v, %v", r, err)
	}
	// Another key for the name is refused while the first is pending.
	if _, err := enrol(jobstest.Request("web1", "k2")); !errors.Is(err, errConflict) {
		t.Errorf("another key: %v, want errConflict", err)
	}
	if f.N != 0 {
		t.Fatal("signed without a token or an operator")
	}
	// The operator signs: registered at the address asked for.
	if r, err = s.SignRequest("web1", f.Sign, t0.Add(time.Minute)); err != nil || r.State != jobs.StateSigned || r.Serial != "51" {
		t.Fatalf("SignRequest = %+v, %v", r, err)
	}
	ms, _ := s.Minions()
	if len(ms) != 1 || ms[0].Name != "web1" || ms[0].Addr != "127.0.0.1:5000" || ms[0].Fingerprint != "cert-51" {
		t.Errorf("registry %+v", ms)
	}
	if r, err = enrol(jobstest.Request("web1", "k1")); err != nil || r.State != jobs.StateSigned || string(r.Cert) != "der-51" {
		t.Errorf("poll after signing: %+v, %v; want the certificate", r, err)
	}
	if _, err := s.SignRequest("web1", f.Sign, t0); !errors.Is(err, jobs.ErrNotPending) {
		t.Errorf("signing twice: %v", err)
	}
	if _, err := enrol(jobstest.Request("web1", "k3")); !errors.Is(err, errConflict) {
		t.Errorf("another key for a signed name: %v, want errConflict", err)
	}

	// Rejected: the same key is told so; another key may ask again.
	if _, err := enrol(jobstest.Request("web2", "k4")); err != nil {
		t.Fatal(err)
	}
	if r, err = s.RejectRequest("web2", t0); err != nil || r.State != jobs.StateRejected {
		t.Fatalf("RejectRequest = %+v, %v", r, err)
	}
	if _, err := enrol(jobstest.Request("web2", "k4")); !errors.Is(err, errRejected) {
		t.Errorf("poll after rejection: %v, want errRejected", err)
	}
	if _, err := s.RejectRequest("web2", t0); !errors.Is(err, jobs.ErrNotPending) {
		t.Errorf("rejecting twice: %v", err)
	}
	if r, err = enrol(jobstest.Request("web2", "k5")); err != nil || r.State != jobs.StatePending {
		t.Errorf("a new key after a rejection: %+v, %v", r, err)
	}
	if _, err := s.SignRequest("nosuch", f.Sign, t0); !errors.Is(err, jobs.ErrNotPending) {
		t.Errorf("signing a name with no request: %v", err)
	}

	// A name registered with minion add cannot be taken.
	if err := s.AddMinion(jobs.Minion{Name: "db1", Addr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := enrol(jobstest.Request("db1", "k6")); !errors.Is(err, jobs.ErrExists) {
		t.Errorf("a registered name: %v, want ErrExists", err)
	}

	// At most MaxPending requests wait.
	for i := range 2 {
		if _, err := enrol(jobstest.Request(fmt.Sprintf("q%d", i), fmt.Sprintf("kq%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := enrol(jobstest.Request("q9", "kq9")); !errors.Is(err, errTooManyPending) {
		t.Errorf("a fourth pending request: %v, want errTooManyPending", err)
	}
	reqs, err := s.Requests()
	if err != nil || len(reqs) != 4 {
		t.Errorf("Requests() = %d, %v; want 4", len(reqs), err)
	}
}

func TestEnrolTokenReplacesPending(t *testing.T) {
	s := jobstest.New(t)
	f := &jobstest.Signer{At: t0}
	jobstest.AddToken(t, s, "t1", "secret", 5, t0, time.Hour)
	// Someone asks for web1 first, without a token.
	if _, err := enrolRequest(s, enrolInput{Request: jobstest.Request("web1", "intruder"), Now: t0}); err != nil {
		t.Fatal(err)
	}
	// A wrong token changes nothing.
	if _, err := enrolRequest(s, enrolInput{Request: jobstest.Request("web1", "real"), TokenID: "t1", TokenHash: jobstest.TokenHash("bad"), Now: t0, Sign: f.Sign}); !errors.Is(err, errTokenInvalid) {
		t.Fatalf("bad token: %v", err)
	}
	// The token holder wins.
	r, err := enrolRequest(s, enrolInput{Request: jobstest.Request("web1", "real"), TokenID: "t1", TokenHash: jobstest.TokenHash("secret"), Now: t0, Sign: f.Sign})
	if err != nil || r.State != jobs.StateSigned || r.KeyFingerprint != "real" || r.TokenID != "t1" {
		t.Fatalf("token enrolment over a pending request: %+v, %v", r, err)
	}
	if _, err := enrolRequest(s, enrolInput{Request: jobstest.Request("web1", "intruder"), Now: t0}); !errors.Is(err, errConflict) {
		t.Errorf("the intruder polling: %v, want errConflict", err)
	}
	// A pending request of the same key is signed when it comes back with a token.
	if _, err := enrolRequest(s, enrolInput{Request: jobstest.Request("web2", "k2"), Now: t0}); err != nil {
		t.Fatal(err)
	}
	r, err = enrolRequest(s, enrolInput{Request: jobstest.Request("web2", "k2"), TokenID: "t1", TokenHash: jobstest.TokenHash("secret"), Now: t0.Add(time.Minute), Sign: f.Sign})
	if err != nil || r.State != jobs.StateSigned || !r.RequestedAt.Equal(t0) {
		t.Fatalf("pending, then a token: %+v, %v", r, err)
	}
	// Asking again with the token after it is signed uses no token.
	if _, err := enrolRequest(s, enrolInput{Request: jobstest.Request("web2", "k2"), TokenID: "t1", TokenHash: jobstest.TokenHash("secret"), Now: t0, Sign: f.Sign}); err != nil {
		t.Fatal(err)
	}
	ts, _ := s.Tokens()
	if ts[0].Used != 2 {
		t.Errorf("token used %d times, want 2", ts[0].Used)
	}
}

// TestEnrolAfterRevoke: the key of a revoked certificate is told so; a
// new key may ask again.
func TestEnrolAfterRevoke(t *testing.T) {
	s := jobstest.New(t)
	f := &jobstest.Signer{At: t0}
	jobstest.AddToken(t, s, "t1", "secret", 5, t0, time.Hour)
	if _, err := enrolRequest(s, enrolInput{Request: jobstest.Request("web1", "k-web1"), TokenID: "t1", TokenHash: jobstest.TokenHash("secret"), Now: t0, Sign: f.Sign}); err != nil {
		t.Fatal(err)
	}
	makeCRL := func(number int64, _ []jobs.Cert) ([]byte, error) { return []byte(fmt.Sprint(number)), nil }
	if _, _, err := s.Revoke([]string{"51"}, t0.Add(time.Minute), makeCRL); err != nil {
		t.Fatal(err)
	}
	if _, err := enrolRequest(s, enrolInput{Request: jobstest.Request("web1", "k-web1"), Now: t0}); !errors.Is(err, errRevoked) {
		t.Errorf("web1 asking again with the revoked key: %v, want errRevoked", err)
	}
	if r, err := enrolRequest(s, enrolInput{Request: jobstest.Request("web1", "new"), Now: t0}); err != nil || r.State != jobs.StatePending {
		t.Errorf("web1 with a new key: %+v, %v; want pending", r, err)
	}
}

// TestEnrolOldStore: a store made before the enrolment buckets existed
// takes a request, gaining them.
func TestEnrolOldStore(t *testing.T) {
	s := jobstest.PreEnrolment(t)
	if r, err := enrolRequest(s, enrolInput{Request: jobstest.Request("web1", "k1"), Now: t0}); err != nil || r.State != jobs.StatePending {
		t.Errorf("enrolRequest = %+v, %v", r, err)
	}
	jobstest.Check(t, s.Path())
}
