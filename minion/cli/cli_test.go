package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/certs/certstest"
	"github.com/overlordhq/overlord/minion"
	"github.com/overlordhq/overlord/minion/cli"
)

func run(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	app := &cli.App{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }}
	root := app.Root()
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

func TestInit(t *testing.T) {
	ca := certstest.NewCA(t)
	bundles := t.TempDir()
	web1 := certstest.WriteBundle(t, bundles, "web1.pem", ca.Minion("web1"))
	op := certstest.WriteBundle(t, bundles, "op.pem", ca.Overlord("op"))
	dir := filepath.Join(t.TempDir(), "minion")

	if _, _, err := run(t, nil, "--state-dir", dir, "init"); err == nil || !strings.Contains(err.Error(), "--bundle FILE is required") {
		t.Errorf("init without --bundle: %v", err)
	}
	if _, _, err := run(t, nil, "--state-dir", dir, "init", "--bundle", op); err == nil || !strings.Contains(err.Error(), "not a minion's") {
		t.Errorf("init with an overlord bundle: %v", err)
	}
	out, _, err := run(t, nil, "--state-dir", dir, "init", "--bundle", web1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "minion web1 initialised in "+dir) {
		t.Errorf("stdout %q", out)
	}
	// A bundle without the address it was registered at: say how to
	// find the port.
	if !strings.Contains(out, "serve --listen :PORT, with the port of the address the minion was registered at") {
		t.Errorf("stdout %q does not say which --listen to use", out)
	}
	fi, err := os.Stat(filepath.Join(dir, minion.KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key: %v %v", fi, err)
	}
	if _, _, err := run(t, nil, "--state-dir", dir, "init", "--bundle", web1); err == nil {
		t.Error("second init succeeded")
	}
}

// The bundle of 'overlord minion add' records the address: init prints
// the --listen that matches it.
func TestInitPrintsListen(t *testing.T) {
	ca := certstest.NewCA(t)
	web1 := certstest.WriteBundle(t, t.TempDir(), "web1.pem", ca.Minion("web1"))
	data, err := os.ReadFile(web1)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(web1, append(certs.BundleAddrNote("10.0.0.11:41015"), data...), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "minion")
	out, _, err := run(t, nil, "--state-dir", dir, "init", "--bundle", web1)
	if err != nil {
		t.Fatal(err)
	}
	// The state directory is not the default: the command says it.
	if want := "the overlord reaches it at 10.0.0.11:41015\nnext: minion --state-dir " + dir + " serve --listen :41015\n"; !strings.HasSuffix(out, want) {
		t.Errorf("stdout %q, want it to end %q", out, want)
	}
	// From MINION_STATE_DIR, serve finds it the same way.
	dir2 := filepath.Join(t.TempDir(), "minion")
	out, _, err = run(t, map[string]string{"MINION_STATE_DIR": dir2}, "init", "--bundle", web1)
	if err != nil {
		t.Fatal(err)
	}
	if want := "next: minion serve --listen :41015\n"; !strings.HasSuffix(out, want) {
		t.Errorf("stdout %q, want it to end %q", out, want)
	}
}

func TestStateDirFromEnv(t *testing.T) {
	ca := certstest.NewCA(t)
	web1 := certstest.WriteBundle(t, t.TempDir(), "web1.pem", ca.Minion("web1"))
	dir := filepath.Join(t.TempDir(), "minion")
	if _, _, err := run(t, map[string]string{"MINION_STATE_DIR": dir}, "init", "--bundle", web1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, minion.CertFile)); err != nil {
		t.Errorf("MINION_STATE_DIR not used: %v", err)
	}
}

func TestServeErrors(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := run(t, nil, "--state-dir", dir, "serve", "--log-level", "loud"); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Errorf("bad --log-level: %v", err)
	}
	if _, _, err := run(t, nil, "--state-dir", dir, "serve", "--listen", "127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "minion init") {
		t.Errorf("serve without identity: %v", err)
	}
	if err := minion.Identity(dir).Install(certstest.NewCA(t).Minion("web1")); err != nil {
		t.Fatal(err)
	}
	acl := filepath.Join(dir, minion.ACLFile)
	if err := os.WriteFile(acl, []byte("*: test.*\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(acl, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, nil, "--state-dir", dir, "serve", "--listen", "127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), acl+" has mode 0666, writable by group or others; it must be 0644 (chmod 644 "+acl+")") {
		t.Errorf("serve with a world-writable acl.conf: %v", err)
	}
}

// serve runs until its context ends, then shuts down cleanly.
func TestServeStops(t *testing.T) {
	ca := certstest.NewCA(t)
	dir := t.TempDir()
	if err := minion.Identity(dir).Install(ca.Minion("web1")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	errb := &lockedBuffer{}
	app := &cli.App{Stdout: &out, Stderr: errb, Getenv: func(string) string { return "" }}
	root := app.Root()
	root.SetArgs([]string{"--state-dir", dir, "serve", "--listen", "127.0.0.1:0", "--grace", "1s"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	// Wait for the serving log line, then stop.
	for i := 0; i < 500 && !strings.Contains(errb.String(), "minion serving"); i++ {
		select {
		case err := <-done:
			t.Fatalf("serve ended early: %v\n%s", err, errb.String())
		default:
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(errb.String(), "minion serving") {
		t.Errorf("serve never logged that it serves:\n%s", errb.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
}

// lockedBuffer is a bytes.Buffer safe to read while a logger writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
