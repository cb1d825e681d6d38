//go:build linux

package e2e

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeSignals: 'minion serve' stops on SIGTERM or SIGINT with exit
// status 0 and its port closed.
func TestServeSignals(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			f := startFleet(t, "web1")
			m := mustMinion(t, f, "web1")
			m.stopped = true
			start := time.Now()
			if err := m.p.signal(sig); err != nil {
				t.Fatal(err)
			}
			if !m.p.wait(stopTimeout) {
				t.Fatalf("still running %s after %v", stopTimeout, sig)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("took %s to stop with nothing in flight", took)
			}
			if m.p.err != nil {
				t.Errorf("exit: %v, want status 0\n%s", m.p.err, m.p.logTail(20))
			}
			if err := waitPort(m.addr, false, time.Second, nil); err != nil {
				t.Error(err)
			}
			if log := m.p.logTail(5); !strings.Contains(log, "minion shutting down") {
				t.Errorf("no shutdown in the log:\n%s", log)
			}
		})
	}
}

// TestServeDrains: on SIGTERM a minion stops accepting at once but lets a
// call in flight finish (within --grace) before it exits 0.
func TestServeDrains(t *testing.T) {
	t.Parallel()
	// Race-built: a minion's drain, a call in flight during SIGTERM.
	f := startRaceFleet(t, "web1")
	m := mustMinion(t, f, "web1")

	// The minion runs the command in its state directory.
	call, stdout, stderr := overlordCmd(f, "call", "web1", "command.run", "touch started; sleep 1", "-o", "json")
	if err := call.Start(); err != nil {
		t.Fatal(err)
	}
	callDone := make(chan error, 1)
	go func() { callDone <- call.Wait() }()
	t.Cleanup(func() { // in case the test fails early
		_ = call.Process.Kill()
		<-callDone
	})
	waitFile(t, filepath.Join(m.dir, "started"))

	m.stopped = true
	off := logSize(m.p)
	if err := m.p.signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(t, m.p, off, "minion shutting down")
	// New connections are refused while the call in flight goes on.
	if err := waitPort(m.addr, false, 2*time.Second, nil); err != nil {
		t.Error(err)
	}
	if m.p.exited() {
		t.Error("minion exited with a call in flight")
	}

	err := <-callDone
	callDone <- err // for the cleanup
	if err != nil {
		t.Errorf("call: %v\n%s%s", err, stdout, stderr)
	}
	if !strings.Contains(stdout.String(), `"ok": true`) {
		t.Errorf("call in flight did not succeed:\n%s", stdout)
	}
	if !m.p.wait(stopTimeout) {
		t.Fatalf("minion still running %s after its last call", stopTimeout)
	}
	if m.p.err != nil {
		t.Errorf("exit: %v, want status 0\n%s", m.p.err, m.p.logTail(20))
	}
}

// TestServeSecondSignal: a second signal during the drain ends the minion
// at once instead of waiting for the call in flight.
func TestServeSecondSignal(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1")
	m := mustMinion(t, f, "web1")

	call, stdout, _ := overlordCmd(f, "call", "web1", "test.sleep", "30", "-o", "json")
	if err := call.Start(); err != nil {
		t.Fatal(err)
	}
	callDone := make(chan error, 1)
	go func() { callDone <- call.Wait() }()
	t.Cleanup(func() {
		_ = call.Process.Kill()
		<-callDone
	})
	if err := waitConn(m.addr, readyTimeout); err != nil {
		t.Fatal(err)
	}

	m.stopped = true
	off := logSize(m.p)
	if err := m.p.signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(t, m.p, off, "minion shutting down")
	start := time.Now()
	if err := m.p.signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The fleet's minions have --grace 3s: well before that.
	if !m.p.wait(2 * time.Second) {
		t.Fatal("second SIGTERM did not end the minion")
	}
	t.Logf("minion ended %s after the second signal: %s", time.Since(start).Round(time.Millisecond), m.p.state())
	if err := waitPort(m.addr, false, time.Second, nil); err != nil {
		t.Error(err)
	}

	// The call learns at once that its minion is gone.
	select {
	case err := <-callDone:
		callDone <- err // for the cleanup
		if !strings.Contains(stdout.String(), `"kind": "unreachable"`) {
			t.Errorf("call: %v, want kind unreachable:\n%s", err, stdout)
		}
	case <-time.After(5 * time.Second):
		t.Error("call still running 5s after its minion ended")
	}
}
