//go:build linux

package e2e

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClientRefusals calls a real minion process with raw TLS clients:
// only a certificate of the minion's CA with the overlord role gets an
// answer. A refusal may come as a failed handshake or as a failed first
// request (TLS 1.3 checks the client's certificate after the client's
// side of the handshake is done); either way no result comes back.
func TestClientRefusals(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2")
	web1 := mustMinion(t, f, "web1")
	pool := caPool(t, f.stateDir)

	// Identities made with the CLI: a second operator of this CA, and
	// everything of another CA.
	if _, err := f.overlord("ca", "client", "ci-bot", "--bundle-out", filepath.Join(f.dir, "ci-bot.pem")); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(f.dir, "other")
	if _, err := f.run("overlord", "--state-dir", other, "ca", "init"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.run("overlord", "--state-dir", other, "ca", "client", "ci-bot", "--bundle-out", filepath.Join(f.dir, "other-ci-bot.pem")); err != nil {
		t.Fatal(err)
	}

	own := loadPair(t, filepath.Join(f.stateDir, "overlord.crt"), filepath.Join(f.stateDir, "overlord.key"))
	ciBot := loadPair(t, filepath.Join(f.dir, "ci-bot.pem"), filepath.Join(f.dir, "ci-bot.pem"))
	web2 := mustMinion(t, f, "web2")

	tests := []struct {
		name   string
		certs  []tls.Certificate
		accept bool
		why    string // the reason in the minion's (debug) log
	}{
		{"overlord identity from ca init", []tls.Certificate{own}, true, ""},
		{"second identity from ca client", []tls.Certificate{ciBot}, true, ""},
		{"no client certificate", nil, false, "didn't provide a certificate"},
		{"overlord identity of another CA", []tls.Certificate{
			loadPair(t, filepath.Join(other, "overlord.crt"), filepath.Join(other, "overlord.key"))},
			false, "certificate signed by unknown authority"},
		{"ca client identity of another CA", []tls.Certificate{
			loadPair(t, filepath.Join(f.dir, "other-ci-bot.pem"), filepath.Join(f.dir, "other-ci-bot.pem"))},
			false, "certificate signed by unknown authority"},
		{"a minion's certificate", []tls.Certificate{loadPair(t, web2.bundle, web2.bundle)},
			false, "incompatible key usage"},
		{"the CA's own certificate", []tls.Certificate{
			loadPair(t, filepath.Join(f.stateDir, "ca.crt"), filepath.Join(f.stateDir, "ca.key"))},
			false, `has role ca, want overlord`},
		{"client certificate of the CA without the overlord role", []tls.Certificate{
			forgeClient(t, f.stateDir, "intruder", "operator")}, false, `has role none, want overlord`},
		{"self-signed certificate with the overlord role", []tls.Certificate{
			selfSigned(t, "overlord-root", "overlord")}, false, "certificate signed by unknown authority"},
	}
	// The subtests run one after the other: each looks for its reason in
	// the log.
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			off := logSize(web1.p)
			res, err := rawPing(ctx, web1.addr, "web1", pool, tt.certs...)
			switch {
			case tt.accept && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.accept && string(res) == "":
				t.Fatal("no result")
			case tt.accept:
				if !strings.Contains(string(res), `"result":true`) {
					t.Errorf("result %s, want test.ping's true", res)
				}
			case err == nil:
				t.Fatalf("accepted, answered %s", res)
			case !strings.Contains(err.Error(), "tls"):
				t.Errorf("refused, but not by TLS: %v", err)
			default:
				t.Logf("refused: %v", err)
				waitLog(t, web1.p, off, tt.why)
			}
		})
	}

	// The refusals did not hurt the minion.
	if _, err := rawPing(context.Background(), web1.addr, "web1", pool, own); err != nil {
		t.Fatalf("after the refusals: %v", err)
	}
}

// TestIdentityFlag checks the CLI side: a second identity from 'overlord ca
// client' works through --identity and OVERLORD_IDENTITY, and a bundle
// that is no overlord identity is refused before anything is sent.
func TestIdentityFlag(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2")
	ci := filepath.Join(f.dir, "ci.pem")
	out, err := f.overlord("ca", "client", "ci", "--bundle-out", ci)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `overlord identity "ci" written`) {
		t.Errorf("ca client said %q", out)
	}
	if fi, err := os.Stat(ci); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("bundle %s has mode %v, want 0600", ci, fi.Mode().Perm())
	}

	t.Run("flag", func(t *testing.T) {
		cmd, stdout, stderr := overlordCmd(f, "--identity", ci, "call", "*", "test.ping")
		if code := exitCode(t, cmd); code != 0 {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
		if !strings.Contains(stdout.String(), "2 minions: 2 ok, 0 failed") {
			t.Errorf("stdout:\n%s", stdout)
		}
	})
	t.Run("env", func(t *testing.T) {
		cmd, stdout, stderr := overlordCmd(f, "call", "*", "test.ping")
		cmd.Env = append(cmd.Env, "OVERLORD_IDENTITY="+ci)
		if code := exitCode(t, cmd); code != 0 {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
	})
	// The minions log who called.
	waitLog(t, mustMinion(t, f, "web1").p, 0, "identity=ci ")

	t.Run("minion bundle", func(t *testing.T) {
		cmd, stdout, stderr := overlordCmd(f, "--identity", mustMinion(t, f, "web2").bundle, "call", "*", "test.ping")
		if code := exitCode(t, cmd); code != 2 {
			t.Fatalf("exit %d, want 2\n%s%s", code, stdout, stderr)
		}
		if !strings.Contains(stderr.String(), `has role "minion", not overlord`) {
			t.Errorf("stderr: %s", stderr)
		}
	})
	t.Run("identity of another CA", func(t *testing.T) {
		other := filepath.Join(f.dir, "other")
		if _, err := f.run("overlord", "--state-dir", other, "ca", "init"); err != nil {
			t.Fatal(err)
		}
		bundle := filepath.Join(f.dir, "other-ci.pem")
		if _, err := f.run("overlord", "--state-dir", other, "ca", "client", "ci", "--bundle-out", bundle); err != nil {
			t.Fatal(err)
		}
		cmd, stdout, stderr := overlordCmd(f, "--identity", bundle, "call", "*", "test.ping", "-o", "json")
		if code := exitCode(t, cmd); code != 1 {
			t.Fatalf("exit %d, want 1\n%s%s", code, stdout, stderr)
		}
		if n := strings.Count(stdout.String(), `"kind": "tls"`); n != 2 {
			t.Errorf("%d minions failed with kind tls, want 2:\n%s", n, stdout)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		cmd, _, stderr := overlordCmd(f, "--identity", filepath.Join(f.dir, "nosuch.pem"), "call", "*", "test.ping")
		if code := exitCode(t, cmd); code != 2 {
			t.Fatalf("exit %d, want 2", code)
		}
		if !strings.Contains(stderr.String(), "nosuch.pem") {
			t.Errorf("stderr does not name the file: %s", stderr)
		}
	})
}

// forgeClient signs, with the CA key in stateDir, a client-auth
// certificate named name whose role (OU) is role.
func forgeClient(t *testing.T, stateDir, name, role string) tls.Certificate {
	t.Helper()
	caCert := readPEM(t, filepath.Join(stateDir, "ca.crt"))
	ca, err := x509.ParseCertificate(caCert)
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.ParsePKCS8PrivateKey(readPEM(t, filepath.Join(stateDir, "ca.key")))
	if err != nil {
		t.Fatal(err)
	}
	return issue(t, name, role, ca, k.(crypto.Signer))
}

// selfSigned makes a self-signed client-auth certificate.
func selfSigned(t *testing.T, name, role string) tls.Certificate {
	t.Helper()
	return issue(t, name, role, nil, nil)
}

// issue makes a key and a client-auth certificate for it, signed by
// parent (self-signed if nil).
func issue(t *testing.T, name, role string, parent *x509.Certificate, parentKey crypto.Signer) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name, OrganizationalUnit: []string{role}, Organization: []string{"overlord"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// readPEM returns the bytes of the first PEM block in file.
func readPEM(t *testing.T, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		t.Fatalf("%s: no PEM", file)
	}
	return blk.Bytes
}
