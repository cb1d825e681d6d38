package jobs_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/jobs/jobstest"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// TestTokenStore: tokens are stored once, and deleted once.
func TestTokenStore(t *testing.T) {
	s := jobstest.New(t)
	jobstest.AddToken(t, s, "t1", "secret1", 2, t0, time.Hour)
	if err := s.AddToken(jobs.Token{ID: "t1"}); !errors.Is(err, jobs.ErrExists) {
		t.Errorf("a second t1: %v, want ErrExists", err)
	}
	if ts, err := s.Tokens(); err != nil || len(ts) != 1 || ts[0].ID != "t1" || ts[0].Hash != jobstest.TokenHash("secret1") {
		t.Errorf("Tokens() = %+v, %v", ts, err)
	}
	if err := s.DeleteToken("t1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteToken("t1"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("deleting twice: %v", err)
	}
}

// TestEnrolTx: an UpdateEnrolment transaction keeps what it wrote only
// if it succeeds; a ViewEnrolment one cannot write.
func TestEnrolTx(t *testing.T) {
	s := jobstest.New(t)
	f := &jobstest.Signer{At: t0}
	jobstest.AddToken(t, s, "t1", "secret", 2, t0, time.Hour)
	// A failing signer: the token's use, written first, is not kept.
	f.Fail = errors.New("no CA")
	err := s.UpdateEnrolment(func(tx jobs.EnrolTx) error {
		tok, ok, err := tx.Token("t1")
		if err != nil || !ok {
			return fmt.Errorf("Token(t1) = %+v, %v, %v", tok, ok, err)
		}
		tok.Used++
		if err := tx.PutToken(tok); err != nil {
			return err
		}
		_, err = tx.Sign(jobstest.Request("web1", "k1"), f.Sign, t0)
		return err
	})
	if !errors.Is(err, f.Fail) {
		t.Fatalf("UpdateEnrolment: %v, want the signer's error", err)
	}
	if ts, _ := s.Tokens(); ts[0].Used != 0 {
		t.Errorf("token used %d times after a failed transaction, want 0", ts[0].Used)
	}
	if ms, _ := s.Minions(); len(ms) != 0 {
		t.Errorf("registry %+v after a failed transaction, want empty", ms)
	}
	f.Fail = nil
	signed := enrolSigned(t, s, f, "web1", "k1")
	if signed.State != jobs.StateSigned || signed.Serial != "51" || string(signed.Cert) != "der-51" {
		t.Errorf("signed %+v", signed)
	}
	if ms, _ := s.Minions(); len(ms) != 1 || ms[0].Name != "web1" || ms[0].Fingerprint != "cert-51" {
		t.Errorf("registry %+v", ms)
	}
	err = s.UpdateEnrolment(func(tx jobs.EnrolTx) error {
		_, err := tx.Sign(jobstest.Request("web1", "k9"), f.Sign, t0)
		return err
	})
	if !errors.Is(err, jobs.ErrExists) {
		t.Errorf("signing a registered name: %v, want ErrExists", err)
	}
	err = s.ViewEnrolment(func(tx jobs.EnrolTx) error {
		r, ok, err := tx.Request("web1")
		if err != nil || !ok || r.State != jobs.StateSigned {
			t.Errorf("Request(web1) = %+v, %v, %v", r, ok, err)
		}
		if _, ok, _ := tx.Request("nosuch"); ok {
			t.Error("Request(nosuch) found one")
		}
		if _, ok, _ := tx.Token("nosuch"); ok {
			t.Error("Token(nosuch) found one")
		}
		if !tx.Registered("web1") || tx.Registered("web2") {
			t.Error("Registered: want web1 only")
		}
		if n := tx.PendingRequests(); n != 0 {
			t.Errorf("PendingRequests() = %d, want 0", n)
		}
		return tx.PutRequest(jobstest.Request("web2", "k2"))
	})
	if !errors.Is(err, bolterrors.ErrTxNotWritable) {
		t.Errorf("a write in ViewEnrolment: %v, want ErrTxNotWritable", err)
	}
}

// enrolSigned stores a request for name from key and signs it, as an
// enrolment with a token does.
func enrolSigned(t *testing.T, s *jobs.Store, f *jobstest.Signer, name, key string) jobs.CertRequest {
	t.Helper()
	var out jobs.CertRequest
	err := s.UpdateEnrolment(func(tx jobs.EnrolTx) error {
		var err error
		out, err = tx.Sign(jobstest.Request(name, key), f.Sign, t0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
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

func TestRevoke(t *testing.T) {
	s := jobstest.New(t)
	f := &jobstest.Signer{At: t0}
	for _, n := range []string{"web1", "web2"} {
		enrolSigned(t, s, f, n, "k-"+n)
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
	s := jobstest.PreEnrolment(t)
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
	r := jobstest.Request("web1", "k1")
	r.State = jobs.StatePending
	if err := s.UpdateEnrolment(func(tx jobs.EnrolTx) error { return tx.PutRequest(r) }); err != nil {
		t.Errorf("PutRequest: %v", err)
	}
	if rs, err := s.Requests(); err != nil || len(rs) != 1 || rs[0].State != jobs.StatePending {
		t.Errorf("Requests() = %+v, %v", rs, err)
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
