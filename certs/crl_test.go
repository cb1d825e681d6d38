package certs_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/certs/certstest"
)

func TestCRLRoundTrip(t *testing.T) {
	for _, kt := range []certs.KeyType{certs.ECDSA, certs.Ed25519} {
		t.Run(string(kt), func(t *testing.T) {
			ca := certstest.NewCAType(t, kt)
			bot := ca.Overlord("ci-bot")
			op := ca.Overlord("op")
			at := time.Now().Add(-time.Minute).Truncate(time.Second)
			der, err := ca.NewCRL(7, []certs.Revocation{{Serial: bot.Cert.SerialNumber, At: at}}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			crl, err := certs.ParseCRL(der, ca.Cert)
			if err != nil {
				t.Fatal(err)
			}
			if crl.Number != 7 || crl.NumberOf() != 7 || crl.Len() != 1 || !slices.Equal(crl.DER, der) {
				t.Errorf("number %d, len %d", crl.Number, crl.Len())
			}
			if got, ok := crl.Revoked(bot.Cert); !ok || !got.Equal(at) {
				t.Errorf("Revoked(ci-bot) = %s, %v; want %s, true", got, ok, at)
			}
			if _, ok := crl.Revoked(op.Cert); ok {
				t.Error("op is revoked")
			}
			err = certs.CheckRevoked(crl, bot.Cert)
			if !errors.Is(err, certs.ErrRevoked) || !strings.Contains(err.Error(), `overlord certificate "ci-bot"`) {
				t.Errorf("CheckRevoked(ci-bot) = %v", err)
			}
			if err := certs.CheckRevoked(crl, op.Cert); err != nil {
				t.Errorf("CheckRevoked(op) = %v", err)
			}
			pemDER, err := certs.DecodeCRL(certs.EncodeCRL(der))
			if err != nil || !slices.Equal(pemDER, der) {
				t.Errorf("PEM round trip: %v", err)
			}
		})
	}
}

func TestParseCRLRefuses(t *testing.T) {
	ca := certstest.NewCA(t)
	other := certstest.NewCA(t) // same subject name, another key
	good, err := ca.NewCRL(1, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.NewCRL(2, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tampered := slices.Clone(good)
	tampered[len(tampered)-3] ^= 0xff
	tests := []struct {
		name string
		der  []byte
	}{
		{"another CA's", foreign},
		{"tampered", tampered},
		{"garbage", []byte("garbage")},
		{"too big", make([]byte, certs.MaxCRLBytes+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := certs.ParseCRL(tt.der, ca.Cert); !errors.Is(err, certs.ErrBadCRL) {
				t.Fatalf("ParseCRL: %v, want ErrBadCRL", err)
			}
		})
	}
	if _, err := ca.NewCRL(0, nil, time.Now()); err == nil {
		t.Error("NewCRL numbered 0")
	}
	var none *certs.CRL
	if none.NumberOf() != 0 || none.Len() != 0 || certs.CheckRevoked(none, ca.Overlord("x").Cert) != nil {
		t.Error("a nil list must revoke nothing")
	}
}

// TestRefuseRevoked: a server with RefuseRevoked refuses a revoked client
// in the handshake and takes a new list at the next connection; a client
// with it refuses a revoked server.
func TestRefuseRevoked(t *testing.T) {
	ca := certstest.NewCA(t)
	web1 := ca.Minion("web1")
	op, bot := ca.Overlord("op"), ca.Overlord("ci-bot")
	var crl *certs.CRL
	current := func() *certs.CRL { return crl }

	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	ts.TLS = certs.RefuseRevoked(certstest.ServerTLS(t, web1), current)
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	defer ts.Close()
	get := func(id *certs.Bundle, revokedMinions *certs.CRL) error {
		cfg := certs.RefuseRevoked(certstest.ClientTLS(t, id), func() *certs.CRL { return revokedMinions })
		cfg.ServerName = "web1"
		tr := &http.Transport{TLSClientConfig: cfg}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, ts.URL, nil)
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := get(bot, nil); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	der, err := ca.NewCRL(1, []certs.Revocation{{Serial: bot.Cert.SerialNumber, At: time.Now()}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if crl, err = certs.ParseCRL(der, ca.Cert); err != nil {
		t.Fatal(err)
	}
	if err := get(bot, nil); err == nil || !strings.Contains(err.Error(), "bad certificate") {
		t.Errorf("revoked client: %v, want a TLS alert", err)
	}
	if err := get(op, nil); err != nil {
		t.Errorf("another identity: %v", err)
	}
	der, err = ca.NewCRL(2, []certs.Revocation{{Serial: new(big.Int).Set(web1.Cert.SerialNumber), At: time.Now()}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	minions, err := certs.ParseCRL(der, ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	var verr *tls.CertificateVerificationError
	if err := get(op, minions); !errors.As(err, &verr) || !errors.Is(err, certs.ErrRevoked) {
		t.Errorf("revoked server: %v, want a verification error for a revoked certificate", err)
	}
}
