package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

// TestWrongMethod: a route called with a method it does not take is 405
// with the methods it takes in Allow, not "no such route".
func TestWrongMethod(t *testing.T) {
	h := New(Config{}).Handler()
	for _, tc := range []struct{ method, path, allow string }{
		{"GET", "/v1/jobs/x/cancel", "POST"},
		{"DELETE", "/v1/jobs", "GET, POST"},
		{"PUT", "/v1/jobs/check", "POST"},
		{"POST", "/v1/minions/web1", "GET"},
		{"POST", "/v1/groups", "GET"},
		{"GET", "/v1/nothing", ""},
		{"POST", "/v1/jobs/x/nothing", ""},
	} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(tc.method, tc.path, nil)
		h.ServeHTTP(w, r.WithContext(WithCaller(r.Context(), Caller{Name: "test", Via: "cert"})))
		var doc errorDoc
		if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
			t.Fatalf("%s %s: %v %s", tc.method, tc.path, err, w.Body)
		}
		code, kind := http.StatusMethodNotAllowed, status.KindBadArgs
		if tc.allow == "" {
			code, kind = http.StatusNotFound, KindNotFound
		}
		if w.Code != code || doc.Error.Kind != kind || w.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d %s Allow %q, want %d %s Allow %q", tc.method, tc.path, w.Code, doc.Error.Kind, w.Header().Get("Allow"), code, kind, tc.allow)
		}
	}
}

// TestCertificateCheckFails: when the service cannot check a certificate
// (no CA to check it against), the answer is 500 internal, not a verdict
// on the caller.
func TestCertificateCheckFails(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bot"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	a := New(Config{Overlord: overlord.New(t.TempDir(), "", time.Second, nil)})
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/v1/jobs", nil)
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
	a.RequireCertificate(a.Handler()).ServeHTTP(w, r)
	var doc errorDoc
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil || w.Code != http.StatusInternalServerError || doc.Error.Kind != status.KindInternal {
		t.Errorf("no CA: %d %s, want 500 internal", w.Code, w.Body)
	}
}
