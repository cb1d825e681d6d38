//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startServe starts 'overlord serve' on a free loopback port for f's
// state directory; it is stopped when the test ends.
func startServe(t *testing.T, f *fleet) (*proc, string) {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p, err := startProc(f.dir, filepath.Join(f.dir, "serve.log"), f.env, f.path("overlord"),
		"--state-dir", f.stateDir, "serve", "--listen", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.exited() {
			if err := p.terminate(stopTimeout); err != nil {
				t.Errorf("overlord serve: %v\n%s", err, p.logTail(20))
			}
		}
	})
	if err := waitPort(addr, true, readyTimeout, p); err != nil {
		t.Fatalf("%v\n%s", err, p.logTail(20))
	}
	return p, addr
}

// TestEnrolServeSignals: 'overlord serve' leaves overlord.db free between
// requests, and stops on SIGTERM or SIGINT with exit status 0 and its
// port closed.
func TestEnrolServeSignals(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			f := startFleet(t)
			p, addr := startServe(t, f)
			// Other commands get overlord.db at once while it serves.
			if out, err := f.overlord("--lock-timeout", "200ms", "token", "create"); err != nil {
				t.Fatalf("token create while serving: %v\n%s", err, out)
			}
			start := time.Now()
			if err := p.signal(sig); err != nil {
				t.Fatal(err)
			}
			if !p.wait(stopTimeout) {
				t.Fatalf("still running %s after %v", stopTimeout, sig)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("took %s to stop with nothing in flight", took)
			}
			if p.err != nil {
				t.Errorf("exit: %v, want status 0\n%s", p.err, p.logTail(20))
			}
			if err := waitPort(addr, false, time.Second, nil); err != nil {
				t.Error(err)
			}
			if log := p.logTail(5); !strings.Contains(log, "overlord serve shutting down") {
				t.Errorf("no shutdown in the log:\n%s", log)
			}
		})
	}
}

// TestEnrolTokenUsesRace: minion processes racing with one token of 2
// uses: exactly 2 are enrolled and registered; the others are told the
// token is used up.
func TestEnrolTokenUsesRace(t *testing.T) {
	t.Parallel()
	// Race-built: the service's enrolment endpoint, many minions at once.
	f := startRaceFleet(t)
	_, addr := startServe(t, f)
	out, err := f.overlord("token", "create", "--uses", "2", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	if err := json.Unmarshal([]byte(out), &tok); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	const n = 6
	outs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("r%d", i)
			cmd := exec.Command(f.path("minion"), "--state-dir", filepath.Join(f.dir, name), "enroll",
				"--server", addr, "--name", name, "--addr", fmt.Sprintf("127.0.0.1:%d", 40000+i), "--token", tok.Token)
			cmd.Env, cmd.Dir = f.env, f.dir
			b, err := cmd.CombinedOutput()
			outs[i], errs[i] = string(b), err
		}()
	}
	wg.Wait()
	ok := 0
	for i := range n {
		switch {
		case errs[i] == nil:
			ok++
		case !strings.Contains(outs[i], "token_used_up"):
			t.Errorf("r%d: %v\n%s", i, errs[i], outs[i])
		}
	}
	if ok != 2 {
		t.Errorf("%d minions enrolled with a token of 2 uses", ok)
	}
	list, err := f.overlord("minion", "list", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var ms []struct{ Name string }
	if err := json.Unmarshal([]byte(list), &ms); err != nil || len(ms) != 2 {
		t.Errorf("registry: %s (%v), want 2 minions", list, err)
	}
}
