package minion

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/certs/certstest"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// fromPeer returns a request over TLS from peer, naming each of onBehalf
// in rpc.OnBehalfOfHeader.
func fromPeer(peer *x509.Certificate, onBehalf ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, rpc.Path, nil)
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{peer}}
	for _, v := range onBehalf {
		r.Header.Add(rpc.OnBehalfOfHeader, v)
	}
	return r
}

func newTestIdentities(t testing.TB, ca *certstest.CA) *identities {
	t.Helper()
	rev, err := loadRevocation("", ca.Cert, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return newIdentities(ca.Cert, rev)
}

// A certificate a gateway names is verified once and kept, but its dates
// and the revocation list are checked at every request; the cache is
// bounded.
func TestIdentitiesCache(t *testing.T) {
	ca := certstest.NewCA(t)
	ids := newTestIdentities(t, ca)
	gw, op := ca.Gateway("gw"), ca.Overlord("op")
	value := rpc.OnBehalfOf(op.Cert)

	w, err := ids.resolve(fromPeer(gw.Cert, value))
	if err != nil || w != (who{identity: "op", via: "gw"}) {
		t.Fatalf("resolve = %+v, %v; want op via gw", w, err)
	}
	first := ids.cache[value].Value.(*verified).cert
	if _, err := ids.resolve(fromPeer(gw.Cert, value)); err != nil || ids.cache[value].Value.(*verified).cert != first || ids.lru.Len() != 1 {
		t.Errorf("second resolve: %v, cached %d; want the certificate verified before", err, ids.lru.Len())
	}

	// Past the certificate's end, the cached certificate is refused.
	ids.now = func() time.Time { return op.Cert.NotAfter.Add(time.Minute) }
	if _, err := ids.resolve(fromPeer(gw.Cert, value)); status.KindOf(err) != status.KindDenied || !strings.Contains(err.Error(), "not now") {
		t.Errorf("an expired certificate from the cache: %v, want denied", err)
	}
	ids.now = time.Now

	// A list revoking it, installed after it was cached, refuses it.
	der, err := ca.NewCRL(1, []certs.Revocation{{Serial: op.Cert.SerialNumber, At: time.Now()}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ids.rev.update(der, who{identity: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ids.resolve(fromPeer(gw.Cert, value)); status.KindOf(err) != status.KindDenied || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("a revoked certificate from the cache: %v, want denied", err)
	}

	// The least recently used go first.
	ids.max = 2
	var values []string
	for _, name := range []string{"a", "b", "c"} {
		v := rpc.OnBehalfOf(ca.Overlord(name).Cert)
		values = append(values, v)
		if w, err := ids.resolve(fromPeer(gw.Cert, v)); err != nil || w.identity != name {
			t.Fatalf("resolve %s: %+v, %v", name, w, err)
		}
	}
	if ids.lru.Len() != 2 || len(ids.cache) != 2 || ids.cache[values[0]] != nil || ids.cache[values[2]] == nil {
		t.Errorf("cache holds %d (%d): want the last 2", ids.lru.Len(), len(ids.cache))
	}
}

// Direct callers: an overlord identity is itself, and may not name
// another; a request without a certificate or of another role is refused.
func TestIdentitiesDirect(t *testing.T) {
	ca := certstest.NewCA(t)
	ids := newTestIdentities(t, ca)
	op := ca.Overlord("op")
	if w, err := ids.resolve(fromPeer(op.Cert)); err != nil || w != (who{identity: "op"}) {
		t.Errorf("op: %+v, %v", w, err)
	}
	for name, r := range map[string]*http.Request{
		"op naming itself": fromPeer(op.Cert, rpc.OnBehalfOf(op.Cert)),
		"no certificate":   httptest.NewRequest(http.MethodPost, rpc.Path, nil),
		"a minion":         fromPeer(ca.Minion("web9").Cert),
		"an empty name": fromPeer(ca.Sign(&x509.Certificate{Subject: certstest.Subject("", certs.RoleOverlord),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}).Cert),
	} {
		if w, err := ids.resolve(r); status.KindOf(err) != status.KindDenied || err == nil {
			t.Errorf("%s: %+v, %v; want denied", name, w, err)
		}
	}
}

// FuzzOnBehalfOf: whatever a gateway sends in the header, the minion
// answers with a refusal or with the one identity of its CA in the
// corpus, and never panics.
func FuzzOnBehalfOf(f *testing.F) {
	ca := certstest.NewCA(f)
	ids := newTestIdentities(f, ca)
	gw, op := ca.Gateway("gw"), ca.Overlord("op")
	good := rpc.OnBehalfOf(op.Cert)
	for _, s := range []string{
		good, "", "=", "====", "A", good[:len(good)-4], good + "AAAA", strings.ReplaceAll(good, "+", "-"),
		rpc.OnBehalfOf(ca.Minion("web1").Cert), rpc.OnBehalfOf(gw.Cert), rpc.OnBehalfOf(ca.Cert),
		rpc.OnBehalfOf(certstest.NewCA(f).Overlord("op").Cert),
		base64.StdEncoding.EncodeToString(op.Cert.Raw[:len(op.Cert.Raw)/2]),
		base64.StdEncoding.EncodeToString([]byte{0x30, 0x82, 0xff, 0xff}),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		w, err := ids.resolve(fromPeer(gw.Cert, value))
		if err != nil {
			if status.KindOf(err) != status.KindDenied || w.via != "gw" {
				t.Fatalf("%q: %+v, %v; want denied, naming the gateway", value, w, err)
			}
			return
		}
		if w != (who{identity: "op", via: "gw"}) {
			t.Fatalf("%q accepted as %+v", value, w)
		}
	})
}

// BenchmarkResolve: what deciding who is calling costs a request: a
// direct identity, a gateway naming an identity verified before, and
// one naming a certificate not seen before (a signature check).
func BenchmarkResolve(b *testing.B) {
	ca := certstest.NewCA(b)
	ids := newTestIdentities(b, ca)
	gw, op := ca.Gateway("gw"), ca.Overlord("op")
	b.Run("direct", func(b *testing.B) {
		r := fromPeer(op.Cert)
		for b.Loop() {
			if _, err := ids.resolve(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gateway-cached", func(b *testing.B) {
		r := fromPeer(gw.Cert, rpc.OnBehalfOf(op.Cert))
		for b.Loop() {
			if _, err := ids.resolve(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gateway-uncached", func(b *testing.B) {
		r := fromPeer(gw.Cert, rpc.OnBehalfOf(op.Cert))
		for b.Loop() {
			ids.mu.Lock()
			clear(ids.cache)
			ids.lru.Init()
			ids.mu.Unlock()
			if _, err := ids.resolve(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
