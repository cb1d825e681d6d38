//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startFleet makes a fleet in a temporary directory with the named minions
// started, of the binaries built without the race detector; they are
// stopped when the test ends, and one that does not exit 0 on SIGTERM, or
// crashed, fails the test. The async jobs' drivers and runners still
// running then are killed (see fleet.close).
func startFleet(t *testing.T, names ...string) *fleet {
	t.Helper()
	takePlace(t)
	return startFleetOf(t, binDir, names...)
}

// startIdleFleet is startFleet for a test that spends most of its time
// waiting for time to pass (a minion's minute of absence): it takes no
// place among the tests running processes (see places), so that it
// starts with the first and its wait overlaps the others' work.
func startIdleFleet(t *testing.T, names ...string) *fleet {
	t.Helper()
	return startFleetOf(t, binDir, names...)
}

// startRaceFleet is startFleet with the binaries built with the race
// detector (when the tests run with -race or -race-product): for the tests that exercise
// the product's concurrency, where a data race in a minion, a CLI, a
// driver, a runner or the service fails the test. They are several times
// slower to start and to run, so the other tests use startFleet; see
// docs/testing.md.
func startRaceFleet(t *testing.T, names ...string) *fleet {
	t.Helper()
	takePlace(t)
	return startFleetOf(t, raceBinDir, names...)
}

func startFleetOf(t *testing.T, bin string, names ...string) *fleet {
	t.Helper()
	if bin == "" {
		t.Fatal("binaries not built: run through TestMain")
	}
	dir := t.TempDir()
	f := newFleet(dir, filepath.Join(dir, "overlord"), bin, "HOME="+dir)
	f.logf = t.Logf
	t.Cleanup(func() {
		for _, err := range f.close() {
			t.Error(err)
		}
	})
	if err := f.initCA(); err != nil {
		t.Fatal(err)
	}
	var added []*minionProc
	for _, n := range names {
		m, err := f.add(n)
		if err != nil {
			t.Fatal(err)
		}
		added = append(added, m)
	}
	for _, m := range added {
		if err := f.start(m); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range added {
		if err := f.ready(m); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// mustMinion returns the named minion of f.
func mustMinion(t *testing.T, f *fleet, name string) *minionProc {
	t.Helper()
	m, err := f.minion(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// overlordCmd returns an overlord command on f's state directory, not
// started, with its stdout and stderr captured.
func overlordCmd(f *fleet, args ...string) (cmd *exec.Cmd, stdout, stderr *bytes.Buffer) {
	cmd = exec.Command(f.path("overlord"), append([]string{"--state-dir", f.stateDir}, args...)...)
	cmd.Env, cmd.Dir = f.env, f.dir
	stdout, stderr = new(bytes.Buffer), new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	return cmd, stdout, stderr
}

// exitCode runs cmd and returns its exit status.
func exitCode(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	code, err := runCode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// runCode runs cmd and returns its exit status, or an error if it did not
// exit (it could not start, or a signal ended it). Unlike exitCode it may
// be called from any goroutine.
func runCode(cmd *exec.Cmd) (int, error) {
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok && ee.Exited() {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %v", strings.Join(cmd.Args, " "), err)
	}
	return 0, nil
}

// caPool returns the pool of the CA in an overlord state directory.
func caPool(t *testing.T, stateDir string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(stateDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s/ca.crt", stateDir)
	}
	return pool
}

// loadPair loads a certificate and key from PEM files (a bundle may be
// both).
func loadPair(t *testing.T, certFile, keyFile string) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rawPing calls Minion.Call test.ping on the minion at addr over a fresh
// connection, as a client with the given certificates (none: no client
// certificate), checking that the minion is serverName of the CA in pool.
// It returns the JSON-RPC result, or the error that stopped it.
func rawPing(ctx context.Context, addr, serverName string, pool *x509.CertPool, certs ...tls.Certificate) (json.RawMessage, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: serverName}
	if len(certs) > 0 {
		// Send the certificate even if the minion's list of acceptable
		// CAs does not name its issuer, which Certificates would not.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &certs[0], nil
		}
	}
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	body := `{"jsonrpc":"2.0","id":1,"method":"Minion.Call","params":{"module":"test","method":"ping"}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/rpc", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s: %s", resp.Status, data)
	}
	var reply struct {
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(data, &reply); err != nil {
		return nil, fmt.Errorf("decode %s: %v", data, err)
	}
	if len(reply.Error) > 0 && string(reply.Error) != "null" {
		return nil, fmt.Errorf("JSON-RPC error: %s", reply.Error)
	}
	return reply.Result, nil
}

// logSize returns how much the process has logged so far.
func logSize(p *proc) int64 {
	fi, err := os.Stat(p.logPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// waitLog waits until the process's log, from byte offset from on,
// contains s.
func waitLog(t *testing.T, p *proc, from int64, s string) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		data, _ := os.ReadFile(p.logPath)
		if int64(len(data)) >= from && bytes.Contains(data[from:], []byte(s)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q not in the log of pid %d within %s:\n%s", s, p.Pid(), readyTimeout, data)
		}
		time.Sleep(pollEvery)
	}
}

// waitFile waits until file exists.
func waitFile(t *testing.T, file string) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		_, err := os.Stat(file)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v after %s", err, readyTimeout)
		}
		time.Sleep(pollEvery)
	}
}
