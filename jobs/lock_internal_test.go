package jobs

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestQueueMovesWaitOn: a waiter for overlord.db whose lock timeout
// passes while other operations keep taking their turns waits on: the
// timeout bounds one holder, not the queue. Here one holder counts turns
// as a busy queue would, for three times the lock timeout; the waiting
// write then goes through.
func TestQueueMovesWaitOn(t *testing.T) {
	const timeout = time.Second
	s := New(filepath.Join(t.TempDir(), "overlord.db"), timeout)
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(s.path+lockSuffix, syscall.O_RDWR|syscall.O_CREAT|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(fd, syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	q := held(fd)
	released := false
	defer func() {
		if !released {
			q.release()
		}
	}()
	done := make(chan error, 1)
	go func() { done <- s.AddMinion(Minion{Name: "web1", Addr: "127.0.0.1:1"}) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(3 * timeout); time.Now().Before(end); {
		select {
		case err := <-done:
			t.Fatalf("the write gave up (%v) while the queue moved", err)
		case <-tick.C:
			held(fd) // another turn
		}
	}
	q.release()
	released = true
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the write, once the queue was free: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the write did not go through a minute after the queue was free")
	}
}

// TestQueueAbandonedWaits: waits given up (more than maxAbandoned of
// them, so some poll rather than block) all let the lock go once it is
// granted to them: the store is usable afterwards and no wait is left.
func TestQueueAbandonedWaits(t *testing.T) {
	s := New(filepath.Join(t.TempDir(), "overlord.db"), 20*time.Millisecond)
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(s.path+lockSuffix, syscall.O_RDWR|syscall.O_CREAT|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(fd, syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	q := queueLock{fd}
	for i := range maxAbandoned + 4 {
		if err := s.AddMinion(Minion{Name: "web1", Addr: "127.0.0.1:1"}); !errors.Is(err, ErrLocked) {
			q.release()
			t.Fatalf("write %d with the queue held: %v, want ErrLocked", i, err)
		}
	}
	q.release()
	for deadline := time.Now().Add(time.Minute); s.abandoned.Load() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d given-up waits still there a minute after the queue was free", s.abandoned.Load())
		}
	}
	if err := New(s.path, 10*time.Second).AddMinion(Minion{Name: "web1", Addr: "127.0.0.1:1"}); err != nil {
		t.Fatalf("a write once the waits are gone: %v", err)
	}
}
