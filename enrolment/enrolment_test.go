package enrolment_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/certs/certstest"
	"github.com/overlordhq/overlord/enrolment"
)

func TestToken(t *testing.T) {
	ca := certstest.NewCA(t)
	fp := certs.Fingerprint(ca.Cert)
	tok, err := enrolment.NewToken(strings.ToUpper(fp))
	if err != nil {
		t.Fatal(err)
	}
	if tok.CAFingerprint != fp {
		t.Errorf("CA fingerprint %s, want %s", tok.CAFingerprint, fp)
	}
	s := tok.String()
	if !strings.HasPrefix(s, "ovl1.") || strings.ContainsAny(s, " \n") {
		t.Errorf("token %q", s)
	}
	back, err := enrolment.ParseToken(" " + s + "\n")
	if err != nil || back != tok {
		t.Fatalf("ParseToken(%q) = %+v, %v", s, back, err)
	}
	if tok.Hash() == tok.Secret || len(tok.Hash()) != 64 {
		t.Errorf("Hash() = %q", tok.Hash())
	}
	other, _ := enrolment.NewToken(fp)
	if other.ID == tok.ID || other.Secret == tok.Secret || other.Hash() == tok.Hash() {
		t.Error("two tokens share an ID, a secret or a hash")
	}
	for _, bad := range []string{
		"",
		"ovl1",
		"ovl2." + tok.ID + "." + tok.Secret + "." + fp,
		"ovl1." + tok.ID + "." + tok.Secret,
		"ovl1." + tok.ID + "." + tok.Secret + "." + fp + ".x",
		"ovl1." + tok.ID[1:] + "." + tok.Secret + "." + fp,
		"ovl1." + tok.ID + "." + strings.ToUpper(tok.Secret) + "." + fp,
		"ovl1." + tok.ID + ".zz" + tok.Secret[2:] + "." + fp,
		"ovl1." + tok.ID + "." + tok.Secret + "." + fp[:63],
	} {
		if _, err := enrolment.ParseToken(bad); !errors.Is(err, enrolment.ErrBadToken) {
			t.Errorf("ParseToken(%q) = %v, want ErrBadToken", bad, err)
		}
	}
}

func TestNormalizeFingerprint(t *testing.T) {
	fp := strings.Repeat("ab", 32)
	for _, in := range []string{fp, strings.ToUpper(fp), "sha256:" + fp, "SHA256:" + fp, " " + fp + " ",
		strings.TrimSuffix(strings.Repeat("AB:", 32), ":")} {
		if got, err := enrolment.NormalizeFingerprint(in); err != nil || got != fp {
			t.Errorf("NormalizeFingerprint(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", fp[:62], fp + "ab", strings.Repeat("g", 64), "md5:" + fp} {
		if _, err := enrolment.NormalizeFingerprint(in); err == nil {
			t.Errorf("NormalizeFingerprint(%q) accepted", in)
		}
	}
}

// endpoint serves handler over TLS with leaf and the chain given.
func endpoint(t *testing.T, leaf *certs.Bundle, chain ...[]byte) string {
	t.Helper()
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req enrolment.Request
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch req.Token {
		case "":
			w.WriteHeader(http.StatusAccepted)
			json.NewEncoder(w).Encode(enrolment.Reply{State: enrolment.StatePending, Name: req.Name})
		case "expired":
			w.WriteHeader(http.StatusForbidden)
			json.NewEncoder(w).Encode(enrolment.ErrorReply{Error: enrolment.Errorf(enrolment.KindTokenExpired, "join token expired")})
		case "wrong-ca":
			json.NewEncoder(w).Encode(enrolment.Reply{State: enrolment.StateSigned, Name: req.Name,
				Certificate: string(certs.EncodeCert(leaf.Cert)), CA: string(certs.EncodeCert(leaf.Cert))})
		default:
			http.Error(w, "teapot", http.StatusTeapot)
		}
	}))
	id := certstest.TLSCert(t, leaf)
	id.Certificate = append(id.Certificate, chain...)
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{id}, MinVersion: tls.VersionTLS13}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts.Listener.Addr().String()
}

func TestClientVerifiesEndpoint(t *testing.T) {
	ca := certstest.NewCA(t)
	other := certstest.NewCA(t)
	fp := certs.Fingerprint(ca.Cert)
	ep := ca.Bundle("ov", certs.RoleEndpoint)
	ctx := context.Background()
	req := enrolment.Request{Name: "web4", Addr: "127.0.0.1:1", CSR: "x"}

	good := endpoint(t, ep, ca.Cert.Raw)
	c, err := enrolment.NewClient(good, "SHA256:"+strings.ToUpper(fp))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Submit(ctx, req)
	if err != nil || r.State != enrolment.StatePending {
		t.Fatalf("Submit = %+v, %v; want pending", r, err)
	}
	req.Token = "expired"
	if _, err := c.Submit(ctx, req); !errors.Is(err, enrolment.ErrTokenExpired) || errors.Is(err, enrolment.ErrTokenUsedUp) {
		t.Errorf("Submit with an expired token: %v, want ErrTokenExpired", err)
	}
	req.Token = "wrong-ca"
	if _, err := c.Submit(ctx, req); err == nil || !strings.Contains(err.Error(), "sent CA") {
		t.Errorf("a signed reply with another CA: %v", err)
	}
	req.Token = "teapot"
	if _, err := c.Submit(ctx, req); err == nil || !strings.Contains(err.Error(), "418") {
		t.Errorf("an answer that is not the endpoint's: %v", err)
	}
	req.Token = ""
	if got, err := enrolment.PresentedCA(ctx, good); err != nil || got != fp {
		t.Errorf("PresentedCA = %q, %v; want %s", got, err, fp)
	}

	refused := []struct {
		name, addr, want string
	}{
		{"another CA", endpoint(t, other.Bundle("ov", certs.RoleEndpoint), other.Cert.Raw), "not " + fp},
		{"our CA sent, leaf of another", endpoint(t, other.Bundle("ov", certs.RoleEndpoint), ca.Cert.Raw), "endpoint's certificate"},
		{"a minion's certificate", endpoint(t, ca.Minion("web1"), ca.Cert.Raw), `role "minion"`},
		{"an overlord identity", endpoint(t, ca.Overlord("op"), ca.Cert.Raw), "endpoint's certificate"},
		{"no CA in the chain", endpoint(t, ep), "no CA certificate"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			c, err := enrolment.NewClient(tt.addr, fp)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.Submit(ctx, req)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Submit: %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestServerAddr(t *testing.T) {
	for in, want := range map[string]string{
		"ov.example.org":      "ov.example.org:51235",
		"10.0.0.1":            "10.0.0.1:51235",
		"10.0.0.1:4000":       "10.0.0.1:4000",
		"[::1]:4000":          "[::1]:4000",
		"[::1]":               "[::1]:51235",
		"ov.example.org:4000": "ov.example.org:4000",
	} {
		if got, err := enrolment.ServerAddr(in); err != nil || got != want {
			t.Errorf("ServerAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ":4000", "host:0", "host:99999", "host:x"} {
		if got, err := enrolment.ServerAddr(in); err == nil {
			t.Errorf("ServerAddr(%q) = %q, want an error", in, got)
		}
	}
}

// FuzzParseToken: no input makes ParseToken panic, and what it accepts
// prints back as it was given (trimmed).
func FuzzParseToken(f *testing.F) {
	f.Add("ovl1.0123456789abcdef.0123456789abcdef0123456789abcdef." + strings.Repeat("ab", 32))
	f.Add("ovl1...")
	f.Add("")
	f.Add("ovl1.x.y.z")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := enrolment.ParseToken(s)
		if err != nil {
			return
		}
		if got := tok.String(); got != strings.TrimSpace(s) {
			t.Fatalf("ParseToken(%q).String() = %q", s, got)
		}
		if _, err := enrolment.NormalizeFingerprint(tok.CAFingerprint); err != nil {
			t.Fatalf("accepted a token with a bad CA fingerprint: %v", err)
		}
	})
}
