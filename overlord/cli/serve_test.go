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
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/overlord/cli"
)

// lockedBuffer is a bytes.Buffer safe to write from one goroutine and
// read from another.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serve --no-enrol runs the service on the local socket alone: no
// enrolment endpoint, so no CA key needed; commands go through it; it
// stops when told to, exit 0. --listen with it is a usage error.
func TestServeNoEnrol(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addMinion("web1")
	if err := os.Remove(filepath.Join(h.dir, certs.CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	if r := h.run("serve", "--no-enrol", "--listen", "127.0.0.1:0"); r.code != 2 || !strings.Contains(r.err.Error(), "--no-enrol") {
		t.Fatalf("--no-enrol --listen: exit %d %v", r.code, r.err)
	}

	var stderr lockedBuffer
	app := &cli.App{Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &stderr, Getenv: func(string) string { return "" }}
	root := app.Root()
	root.SetArgs([]string{"--state-dir", h.dir, "serve", "--no-enrol"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve --no-enrol: %v\n%s", err, stderr.String())
			}
		case <-time.After(time.Minute):
			t.Error("serve --no-enrol did not stop")
		}
	}()
	c := overlord.New(h.dir, "", 0, nil)
	// The service answers on its socket a moment before serve prints
	// what it serves: wait for both.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if _, ok := c.UseService(context.Background()); ok && strings.Contains(stderr.String(), "no enrolment endpoint (--no-enrol)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service does not answer, or serve does not say it has no endpoint:\n%s", stderr.String())
		}
	}
	r := h.run("call", "web1", "test.ping", "-v")
	if r.code != 0 || !strings.Contains(r.stderr, "via the service at") {
		t.Errorf("call through it: exit %d\n%s", r.code, r.stderr)
	}
}
