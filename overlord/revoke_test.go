package overlord_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// TestRevokeIdentityReachesMinions: after 'ca revoke ci-bot', the next
// call by any other identity hands the new list to the minion, which
// then refuses ci-bot; the overlord refuses to use ci-bot itself.
func TestRevokeIdentityReachesMinions(t *testing.T) {
	o := newOverlord(t)
	startMinion(t, o, "web1")
	botFile := filepath.Join(t.TempDir(), "ci-bot.pem")
	bot, err := o.IssueClient("ci-bot", botFile, certs.ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	asBot := overlord.New(o.Dir, botFile, 0, nil)
	if job := ping(t, asBot, "web1"); job.Summary.OK != 1 {
		t.Fatalf("ci-bot before revocation: %+v", job.Minions)
	}
	// ci-bot's own client, made before the revocation: it stands for a
	// ci-bot elsewhere that does not know of it.
	ms, _ := o.Store.Minions()
	botClient, err := asBot.Client(ms, 1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer botClient.Close()

	r, err := o.Revoke(overlord.RevokeSpec{Name: "ci-bot"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Certs) != 1 || r.Certs[0].Serial != certs.Serial(bot.Cert) || r.CRLNumber != 1 {
		t.Fatalf("Revoke = %+v", r)
	}
	if _, err := asBot.Prepare(overlord.CallSpec{Target: "web1", Module: "test", Method: "ping"}); err != nil {
		t.Fatal(err)
	}
	if _, err := asBot.Client(ms, 1, time.Second); !errors.Is(err, certs.ErrRevoked) {
		t.Errorf("the overlord using a revoked identity: %v, want ErrRevoked", err)
	}
	// The minion has not heard yet: ci-bot elsewhere still gets through.
	botClient.Close()
	var reply rpc.CallReply
	ctx := context.Background()
	if err := botClient.Call(ctx, "web1", "Minion.Call", rpc.CallParams{Module: "test", Method: "ping"}, &reply); err != nil {
		t.Fatalf("ci-bot before the minion heard: %v", err)
	}
	// The operator's next call delivers the list.
	if job := ping(t, o, "web1"); job.Summary.OK != 1 {
		t.Fatalf("op after revocation: %+v", job.Minions)
	}
	botClient.Close()
	err = botClient.Call(ctx, "web1", "Minion.Call", rpc.CallParams{Module: "test", Method: "ping"}, &reply)
	if status.KindOf(err) != status.KindTLS {
		t.Fatalf("ci-bot after the minion heard: %v, want tls", err)
	}
	if job := ping(t, o, "web1"); job.Summary.OK != 1 {
		t.Errorf("op still works: %+v", job.Minions)
	}
	entries, _ := o.Certs()
	for _, e := range entries {
		if e.Name == "ci-bot" && (e.State != "revoked" || e.RevokedAt == nil) {
			t.Errorf("certs list: %+v", e)
		}
	}
}

func TestRevokeMinion(t *testing.T) {
	o := newOverlord(t)
	startMinion(t, o, "web1")
	startMinion(t, o, "web2")
	if err := o.Store.AddToGroup("web", []string{"web1", "web2"}); err != nil {
		t.Fatal(err)
	}
	ms, _ := o.Store.Minions()
	web2Addr := ms[1].Addr
	r, err := o.Revoke(overlord.RevokeSpec{Name: "web2", Role: certs.RoleMinion}, time.Now())
	if err != nil || len(r.Certs) != 1 || r.Certs[0].Role != "minion" {
		t.Fatalf("Revoke(web2) = %+v, %v", r, err)
	}
	inv, _ := o.Store.Inventory()
	if len(inv.Minions) != 1 || inv.Minions[0].Name != "web1" || len(inv.Groups["web"]) != 1 {
		t.Errorf("registry after revoking web2: %+v %v", inv.Minions, inv.Groups)
	}
	if _, err := o.Prepare(overlord.CallSpec{Target: "web2", Module: "test", Method: "ping"}); !errors.Is(err, overlord.ErrNoMatch) {
		t.Errorf("call web2: %v, want no match", err)
	}
	// Registered again at its address, the old web2 is refused for its
	// revoked certificate, not only for the pin.
	if _, err := o.AddMinion("web2", web2Addr, filepath.Join(t.TempDir(), "web2-new.pem"), certs.ECDSA); err != nil {
		t.Fatal(err)
	}
	job := ping(t, o, "web2")
	if e := job.Minions["web2"].Error; e == nil || e.Kind != status.KindTLS || !strings.Contains(e.Message, "revoked") {
		t.Errorf("the revoked web2: %+v, want a tls error saying revoked", job.Minions["web2"])
	}
	if job := ping(t, o, "web1"); job.Summary.OK != 1 {
		t.Errorf("web1: %+v", job.Minions)
	}
}

func TestRevokeRefused(t *testing.T) {
	o := newOverlord(t)
	startMinion(t, o, "dup")
	if _, err := o.IssueClient("dup", filepath.Join(t.TempDir(), "dup.pem"), certs.ECDSA); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := o.Revoke(overlord.RevokeSpec{Name: "op"}, now); err == nil || !strings.Contains(err.Error(), "runs as") {
		t.Errorf("revoking the identity in use: %v", err)
	}
	if _, err := o.Revoke(overlord.RevokeSpec{Name: "nosuch"}, now); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("an unknown name: %v", err)
	}
	if _, err := o.Revoke(overlord.RevokeSpec{Name: "dup"}, now); !errors.Is(err, overlord.ErrAmbiguous) {
		t.Errorf("a name of both roles: %v, want ErrAmbiguous", err)
	}
	if r, err := o.Revoke(overlord.RevokeSpec{Name: "dup", Role: certs.RoleOverlord}, now); err != nil || len(r.Certs) != 1 || r.Certs[0].Role != "overlord" {
		t.Errorf("--role overlord: %+v, %v", r, err)
	}
	if _, err := o.Revoke(overlord.RevokeSpec{Name: "dup", Role: certs.RoleOverlord}, now); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("revoking twice: %v", err)
	}
	if ms, _ := o.Store.Minions(); len(ms) != 1 {
		t.Errorf("revoking the identity dropped the minion of the same name: %+v", ms)
	}
	if n, _, _ := o.Store.CRL(); n != 1 {
		t.Errorf("CRL number %d, want 1", n)
	}
}

// TestRevokeCertFile: a certificate overlord.db never recorded (issued
// before it recorded them) is revoked from its file.
func TestRevokeCertFile(t *testing.T) {
	o := newOverlord(t)
	ca, err := o.Authority()
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue("laptop", certs.RoleOverlord, certs.ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := (&certs.Bundle{Cert: cert, Key: key, CA: ca.Cert}).Encode()
	file := filepath.Join(t.TempDir(), "laptop.pem")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Revoke(overlord.RevokeSpec{Name: "laptop"}, time.Now()); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("by name: %v, want not found", err)
	}
	if _, err := o.Revoke(overlord.RevokeSpec{Name: "other", CertFile: file}, time.Now()); err == nil {
		t.Error("a name that is not the file's")
	}
	r, err := o.Revoke(overlord.RevokeSpec{CertFile: file}, time.Now())
	if err != nil || len(r.Certs) != 1 || r.Certs[0].Name != "laptop" || r.Certs[0].Source != overlord.SourceCAFile {
		t.Fatalf("Revoke --cert = %+v, %v", r, err)
	}
	crl, err := o.CRL(ca.Cert)
	if err != nil || certs.CheckRevoked(crl, cert) == nil {
		t.Errorf("the list does not revoke it: %v", err)
	}
	// A certificate of another CA is refused.
	other := newOverlord(t)
	otherFile := filepath.Join(t.TempDir(), "x.pem")
	if _, err := other.IssueClient("x", otherFile, certs.ECDSA); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Revoke(overlord.RevokeSpec{CertFile: otherFile}, time.Now()); err == nil || !strings.Contains(err.Error(), "not of this CA") {
		t.Errorf("another CA's certificate: %v", err)
	}
}
