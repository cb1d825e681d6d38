package certs_test

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/certs/certstest"
)

func TestBundleRoundTrip(t *testing.T) {
	for _, kt := range []certs.KeyType{certs.ECDSA, certs.Ed25519} {
		t.Run(string(kt), func(t *testing.T) {
			ca := certstest.NewCAType(t, kt)
			b := ca.Minion("web1")
			path := certstest.WriteBundle(t, t.TempDir(), "web1.pem", b)
			got, err := certs.ReadBundle(path)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Cert.Equal(b.Cert) || !got.CA.Equal(b.CA) {
				t.Error("certificates differ after the round trip")
			}
			wantKey, _ := certs.EncodeKey(b.Key)
			gotKey, _ := certs.EncodeKey(got.Key)
			if !bytes.Equal(wantKey, gotKey) {
				t.Error("key differs after the round trip")
			}
			if _, err := got.TLS(); err != nil {
				t.Errorf("TLS: %v", err)
			}
			if !got.Pool().Equal(ca.Pool()) {
				t.Error("Pool does not hold exactly the CA")
			}
		})
	}
}

func TestParseBundleRejects(t *testing.T) {
	ca := certstest.NewCA(t)
	other := certstest.NewCA(t)
	cert, key, caPEM := certstest.PEM(t, ca.Minion("web1"))
	_, key2, _ := certstest.PEM(t, ca.Minion("web2"))
	otherCert, otherKey, otherCA := certstest.PEM(t, other.Minion("web1"))
	edCA := certstest.NewCAType(t, certs.Ed25519)
	_, edKey, _ := certstest.PEM(t, edCA.Minion("web1"))

	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name string
		data []byte
		msg  string
	}{
		{"empty", nil, "not a bundle"},
		{"garbage", []byte("hello, world\n"), "not a bundle"},
		{"cert only", cert, "not a bundle"},
		{"missing CA", join(cert, key), "not a bundle"},
		{"key first", join(key, cert, caPEM), "not a bundle"},
		{"CA second", join(cert, caPEM, key), "not a bundle"},
		{"four blocks", join(cert, key, caPEM, caPEM), "not a bundle"},
		{"key of another cert", join(cert, key2, caPEM), "do not match"},
		{"key of another type", join(cert, edKey, caPEM), "do not match"},
		{"cert of another CA", join(otherCert, otherKey, caPEM), "not signed by the bundle's CA"},
		{"CA of another CA", join(cert, key, otherCA), "not signed by the bundle's CA"},
		{"corrupt certificate", join(corrupt(t, cert), key, caPEM), "certificate"},
		{"corrupt key", join(cert, corrupt(t, key), caPEM), "private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := certs.ParseBundle(tt.data)
			if err == nil {
				t.Fatalf("ParseBundle accepted it: %v", b.Cert.Subject)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
		})
	}
}

// corrupt returns a PEM block whose base64 body decodes to other bytes.
func corrupt(t *testing.T, block []byte) []byte {
	t.Helper()
	lines := strings.Split(string(block), "\n")
	if len(lines) < 3 {
		t.Fatal("short PEM")
	}
	lines[1] = strings.Repeat("A", len(lines[1]))
	return []byte(strings.Join(lines, "\n"))
}

func TestReadBundleNamesFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "b.pem")
	if err := os.WriteFile(path, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := certs.ReadBundle(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("ReadBundle(junk) = %v, want an error naming %s", err, path)
	}
	if _, err := certs.ReadBundle(filepath.Join(dir, "missing.pem")); !os.IsNotExist(err) {
		t.Errorf("ReadBundle(missing) = %v, want a not-exist error", err)
	}
}

func TestCheckKeyFile(t *testing.T) {
	tests := []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o400, true},
		{0o700, true},
		{0o640, false},
		{0o644, false},
		{0o604, false},
		{0o660, false},
		{0o666, false},
		{0o620, false},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			path := filepath.Join(dir, "k"+tt.mode.String())
			if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			err := certs.CheckKeyFile(path)
			if tt.ok && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !tt.ok {
				if err == nil {
					t.Fatal("accepted")
				}
				if !strings.Contains(err.Error(), "chmod 600") {
					t.Errorf("error %q does not say how to fix it", err)
				}
			}
		})
	}
	if err := certs.CheckKeyFile(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("CheckKeyFile(missing) = %v, want a not-exist error", err)
	}
}

func TestReadKeyRefusesReadableKey(t *testing.T) {
	ca := certstest.NewCA(t)
	_, key, _ := certstest.PEM(t, ca.Overlord("op"))
	path := filepath.Join(t.TempDir(), "op.key")
	if err := os.WriteFile(path, key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := certs.ReadKey(path); err != nil {
		t.Fatalf("ReadKey(0600) = %v", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := certs.ReadKey(path); err == nil {
		t.Error("ReadKey read a 0644 key")
	}
}

func TestWriteNew(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sub", "dir")
	path := filepath.Join(dir, "f")
	if err := certs.WriteNew(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != certs.DirMode {
		t.Errorf("created directory mode %v, want %v", di.Mode().Perm(), certs.DirMode)
	}

	err = certs.WriteNew(path, []byte("two"), 0o600)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second WriteNew = %v, want 'already exists'", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "one" {
		t.Errorf("file now holds %q; WriteNew replaced it", data)
	}
}

func TestStoreInstallLoad(t *testing.T) {
	ca := certstest.NewCA(t)
	dir := filepath.Join(t.TempDir(), "state")
	st := certs.Store{Dir: dir, CertFile: "minion.crt", KeyFile: "minion.key"}
	b := ca.Minion("web1")
	if err := st.Install(b); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{".": certs.DirMode, "minion.key": certs.KeyMode, "minion.crt": certs.CertMode, certs.CAFile: certs.CertMode} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	got, err := st.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !got.Cert.Equal(b.Cert) || !got.CA.Equal(b.CA) {
		t.Error("Load returned other certificates")
	}

	t.Run("refuses to replace", func(t *testing.T) {
		if err := st.Install(ca.Minion("web2")); err == nil {
			t.Fatal("Install replaced an installed identity")
		}
		got, err := st.Load()
		if err != nil {
			t.Fatal(err)
		}
		if got.Cert.Subject.CommonName != "web1" {
			t.Errorf("identity is now %q", got.Cert.Subject.CommonName)
		}
	})
	t.Run("same CA file is kept", func(t *testing.T) {
		st2 := certs.Store{Dir: dir, CertFile: "other.crt", KeyFile: "other.key"}
		if err := st2.Install(ca.Overlord("op")); err != nil {
			t.Fatalf("second identity with the same CA: %v", err)
		}
	})
	t.Run("another CA is refused", func(t *testing.T) {
		st3 := certs.Store{Dir: dir, CertFile: "third.crt", KeyFile: "third.key"}
		if err := st3.Install(certstest.NewCA(t).Overlord("op")); err == nil {
			t.Error("installed an identity of another CA over ca.crt")
		}
	})
	t.Run("readable key is refused", func(t *testing.T) {
		if err := os.Chmod(filepath.Join(dir, "minion.key"), 0o640); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(filepath.Join(dir, "minion.key"), 0o600)
		if _, err := st.Load(); err == nil || !strings.Contains(err.Error(), "0600") {
			t.Errorf("Load with a 0640 key = %v, want a refusal", err)
		}
	})
}

func TestStoreLoadMismatchedKey(t *testing.T) {
	ca := certstest.NewCA(t)
	dir := t.TempDir()
	cert, _, caPEM := certstest.PEM(t, ca.Minion("web1"))
	_, key2, _ := certstest.PEM(t, ca.Minion("web2"))
	for name, data := range map[string][]byte{"m.crt": cert, "m.key": key2, certs.CAFile: caPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err := certs.Store{Dir: dir, CertFile: "m.crt", KeyFile: "m.key"}.Load()
	if err == nil || !strings.Contains(err.Error(), "do not match") {
		t.Errorf("Load = %v, want 'do not match'", err)
	}
}

func TestAuthoritySaveLoad(t *testing.T) {
	for _, kt := range []certs.KeyType{certs.ECDSA, certs.Ed25519} {
		t.Run(string(kt), func(t *testing.T) {
			a, err := certs.NewAuthority("ca", kt)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := a.Save(dir); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(filepath.Join(dir, certs.CAKeyFile))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("ca.key mode %v, want 0600", fi.Mode().Perm())
			}
			if err := a.Save(dir); err == nil {
				t.Error("second Save replaced the CA")
			}
			got, err := certs.LoadAuthority(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Cert.Equal(a.Cert) {
				t.Error("loaded another CA certificate")
			}
			// The loaded key signs certificates the original CA verifies.
			leaf, _, err := got.Issue("web1", certs.RoleMinion, kt)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: poolOf(a.Cert)}); err != nil {
				t.Errorf("certificate issued by the loaded CA does not verify: %v", err)
			}
		})
	}
}

func poolOf(c *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}

func TestReadCertRejects(t *testing.T) {
	ca := certstest.NewCA(t)
	_, key, _ := certstest.PEM(t, ca.Minion("web1"))
	dir := t.TempDir()
	for name, data := range map[string][]byte{"empty": nil, "key": key, "text": []byte("not pem")} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := certs.ReadCert(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("ReadCert(%s) = %v, want an error naming the file", name, err)
		}
	}
}

// An Install that fails must leave the directory as it was: a key and
// certificate left next to another CA's ca.crt would later load as an
// identity that trusts the wrong CA.
func TestStoreInstallFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	first := certs.Store{Dir: dir, CertFile: "a.crt", KeyFile: "a.key"}
	if err := first.Install(certstest.NewCA(t).Minion("web1")); err != nil {
		t.Fatal(err)
	}
	caBefore, err := os.ReadFile(filepath.Join(dir, certs.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	second := certs.Store{Dir: dir, CertFile: "b.crt", KeyFile: "b.key"}
	err = second.Install(certstest.NewCA(t).Minion("web1"))
	if err == nil {
		t.Fatal("installed an identity of another CA over ca.crt")
	}
	if !strings.Contains(err.Error(), certs.CAFile) {
		t.Errorf("Install next to another CA's ca.crt: %v; want an error naming %s", err, certs.CAFile)
	}
	if caAfter, _ := os.ReadFile(filepath.Join(dir, certs.CAFile)); !bytes.Equal(caBefore, caAfter) {
		t.Error("a failed Install changed ca.crt")
	}
	var left []string
	for _, name := range []string{"b.crt", "b.key"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			left = append(left, name)
		}
	}
	if len(left) > 0 {
		t.Errorf("certs.Store.Install failed on ca.crt (another CA's certificate is there) but left %v behind; "+
			"Load would pair them with the other CA", left)
	}
}
