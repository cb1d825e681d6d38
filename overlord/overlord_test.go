package overlord_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/jobs/jobstest"
	"github.com/overlordhq/overlord/overlord"
)

// newOverlord returns an overlord whose CA and identity ("op") exist, in
// a state directory under t.TempDir(), its store checked on cleanup.
func newOverlord(t *testing.T) *overlord.Overlord {
	t.Helper()
	o := overlord.New(filepath.Join(t.TempDir(), "state"), "", jobstest.LockTimeout, nil)
	if _, err := o.InitCA("op", certs.ECDSA); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jobstest.Check(t, o.Store.Path()) })
	// A job handed to a driver (a call that stops waiting) starts this,
	// which does nothing: never the test binary. Tests that drive a job
	// do it in-process (driveHere).
	o.DriverCommand = []string{"true"}
	return o
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestInitCA(t *testing.T) {
	for _, kt := range []certs.KeyType{certs.ECDSA, certs.Ed25519} {
		t.Run(string(kt), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			if err := os.Mkdir(dir, 0o755); err != nil { // a directory made by hand, too open
				t.Fatal(err)
			}
			o := overlord.New(dir, "", 0, nil)
			ca, err := o.InitCA("op", kt)
			if err != nil {
				t.Fatal(err)
			}
			if !ca.Cert.IsCA {
				t.Error("not a CA")
			}
			want := map[string]os.FileMode{
				dir:                                   0o700,
				filepath.Join(dir, certs.CAKeyFile):   0o600,
				filepath.Join(dir, overlord.KeyFile):  0o600,
				filepath.Join(dir, overlord.DBFile):   0o600,
				filepath.Join(dir, certs.CACertFile):  0o644,
				filepath.Join(dir, overlord.CertFile): 0o644,
			}
			for path, m := range want {
				if got := mode(t, path); got != m {
					t.Errorf("%s mode %v, want %v", path, got, m)
				}
			}
			id, err := o.Identity()
			if err != nil {
				t.Fatal(err)
			}
			if id.Cert.Subject.CommonName != "op" || certs.RoleOf(id.Cert) != certs.RoleOverlord {
				t.Errorf("identity %q role %q", id.Cert.Subject.CommonName, certs.RoleOf(id.Cert))
			}
			if err := id.Cert.CheckSignatureFrom(ca.Cert); err != nil {
				t.Errorf("identity not signed by the CA: %v", err)
			}
			if ms, err := o.Store.Minions(); err != nil || len(ms) != 0 {
				t.Errorf("new store: %v, %v", ms, err)
			}

			caPEM, _ := os.ReadFile(filepath.Join(dir, certs.CACertFile))
			if _, err := o.InitCA("op", kt); err == nil || !strings.Contains(err.Error(), "already holds a CA") {
				t.Errorf("second InitCA = %v, want a refusal", err)
			}
			if after, _ := os.ReadFile(filepath.Join(dir, certs.CACertFile)); string(after) != string(caPEM) {
				t.Error("second InitCA replaced the CA")
			}
		})
	}
}

func TestInitCABadName(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	o := overlord.New(dir, "", 0, nil)
	if _, err := o.InitCA("op erator", certs.ECDSA); !errors.Is(err, certs.ErrBadName) {
		t.Errorf("InitCA(bad name) = %v, want ErrBadName", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Error("a refused InitCA created the state directory")
	}
}

func TestDefaultIdentityName(t *testing.T) {
	n := overlord.DefaultIdentityName()
	if err := certs.CheckName(n); err != nil || !strings.HasPrefix(n, "overlord") {
		t.Errorf("DefaultIdentityName = %q (%v)", n, err)
	}
}

func TestNoCA(t *testing.T) {
	o := overlord.New(t.TempDir(), "", 0, nil)
	if _, err := o.Authority(); err == nil || !strings.Contains(err.Error(), "overlord ca init") {
		t.Errorf("Authority = %v, want a hint", err)
	}
	if _, err := o.Identity(); err == nil || !strings.Contains(err.Error(), "overlord ca init") {
		t.Errorf("Identity = %v, want a hint", err)
	}
	if _, err := o.AddMinion("web1", "h:1", filepath.Join(t.TempDir(), "b.pem"), certs.ECDSA); err == nil {
		t.Error("AddMinion without a CA succeeded")
	}
}

func TestCheckAddr(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"web1:51234", true},
		{"10.0.0.1:1", true},
		{"[::1]:65535", true},
		{"db1.example.org:51234", true},
		{"", false},
		{"web1", false},
		{":51234", false},
		{"web1:", false},
		{"web1:0", false},
		{"web1:65536", false},
		{"web1:http", false},
		{"web1:-1", false},
		{"::1:51234", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			err := overlord.CheckAddr(tt.addr)
			if (err == nil) != tt.ok {
				t.Errorf("CheckAddr(%q) = %v, want ok=%v", tt.addr, err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), tt.addr) {
				t.Errorf("error %q does not quote the address", err)
			}
		})
	}
}

func TestAddMinion(t *testing.T) {
	o := newOverlord(t)
	out := t.TempDir()
	bundle := filepath.Join(out, "web1.pem")
	m, err := o.AddMinion("web1", "127.0.0.1:51234", bundle, certs.ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	if mode(t, bundle) != 0o600 {
		t.Errorf("bundle mode %v, want 0600", mode(t, bundle))
	}
	b, err := certs.ReadBundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if certs.RoleOf(b.Cert) != certs.RoleMinion || b.Cert.Subject.CommonName != "web1" || b.Cert.VerifyHostname("web1") != nil {
		t.Errorf("bundle certificate %v, role %q", b.Cert.Subject, certs.RoleOf(b.Cert))
	}
	ca, _ := o.Authority()
	if !b.CA.Equal(ca.Cert) {
		t.Error("bundle holds another CA")
	}
	ms, err := o.Store.Minions()
	if err != nil || len(ms) != 1 {
		t.Fatalf("Minions = %v, %v", ms, err)
	}
	if ms[0].Name != "web1" || ms[0].Addr != "127.0.0.1:51234" || ms[0].Fingerprint != certs.Fingerprint(b.Cert) || ms[0].AddedAt.IsZero() {
		t.Errorf("registered %+v", ms[0])
	}
	if m.Fingerprint != ms[0].Fingerprint {
		t.Error("returned minion differs from the registered one")
	}
}

// A refused AddMinion registers nothing and writes no bundle.
func TestAddMinionRefused(t *testing.T) {
	o := newOverlord(t)
	out := t.TempDir()
	if _, err := o.AddMinion("web1", "h:1", filepath.Join(out, "web1.pem"), certs.ECDSA); err != nil {
		t.Fatal(err)
	}
	existing := filepath.Join(out, "existing.pem")
	if err := os.WriteFile(existing, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	notADir := filepath.Join(out, "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, minion, addr, bundle string
		wantErr                    error
		msg                        string
	}{
		{"bad name", "web_2", "h:1", filepath.Join(out, "a.pem"), certs.ErrBadName, ""},
		{"bad address", "web2", "h", filepath.Join(out, "b.pem"), nil, "bad address"},
		{"bundle exists", "web2", "h:1", existing, nil, "already exists"},
		{"name taken", "web1", "h:2", filepath.Join(out, "c.pem"), jobs.ErrExists, ""},
		{"bundle not writable", "web2", "h:1", filepath.Join(notADir, "d.pem"), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := o.AddMinion(tt.minion, tt.addr, tt.bundle, certs.ECDSA)
			if err == nil {
				t.Fatal("AddMinion succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
			ms, _ := o.Store.Minions()
			if len(ms) != 1 || ms[0].Addr != "h:1" {
				t.Errorf("registry changed: %+v", ms)
			}
			if tt.bundle != existing {
				if _, err := os.Stat(tt.bundle); err == nil {
					t.Error("a bundle was written")
				}
			}
		})
	}
	if data, _ := os.ReadFile(existing); string(data) != "keep me" {
		t.Error("an existing file was overwritten")
	}
}

func TestIdentityFile(t *testing.T) {
	o := newOverlord(t)
	out := t.TempDir()
	ci := filepath.Join(out, "ci.pem")
	b, err := o.IssueClient("ci-bot", ci, certs.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	if certs.RoleOf(b.Cert) != certs.RoleOverlord || mode(t, ci) != 0o600 {
		t.Errorf("role %q mode %v", certs.RoleOf(b.Cert), mode(t, ci))
	}
	if _, err := o.IssueClient("ci-bot", ci, certs.ECDSA); err == nil {
		t.Error("IssueClient overwrote a bundle")
	}

	withFile := overlord.New(o.Dir, ci, 0, nil)
	id, err := withFile.Identity()
	if err != nil || id.Cert.Subject.CommonName != "ci-bot" {
		t.Fatalf("Identity with --identity = %v, %v", id, err)
	}

	minionBundle := filepath.Join(out, "web1.pem")
	if _, err := o.AddMinion("web1", "h:1", minionBundle, certs.ECDSA); err != nil {
		t.Fatal(err)
	}
	if _, err := overlord.New(o.Dir, minionBundle, 0, nil).Identity(); err == nil || !strings.Contains(err.Error(), "not overlord") {
		t.Errorf("a minion bundle as identity: %v, want a refusal", err)
	}

	if err := os.Chmod(ci, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := withFile.Identity(); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Errorf("a 0644 identity file: %v, want a refusal", err)
	}
}

func TestStateKeyModesRefused(t *testing.T) {
	o := newOverlord(t)
	if err := os.Chmod(filepath.Join(o.Dir, overlord.KeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Identity(); err == nil {
		t.Error("Identity loaded a 0644 overlord.key")
	}
	if err := os.Chmod(filepath.Join(o.Dir, certs.CAKeyFile), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Authority(); err == nil {
		t.Error("Authority loaded a 0640 ca.key")
	}
	if _, err := o.AddMinion("web1", "h:1", filepath.Join(t.TempDir(), "w.pem"), certs.ECDSA); err == nil {
		t.Error("AddMinion signed with a 0640 ca.key")
	}
}
