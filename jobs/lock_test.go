package jobs_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/overlordhq/overlord/jobs"
)

// TestQueueLockTimesOut: an operation that waits its lock timeout in the
// queue for overlord.db fails with ErrLocked and leaves nothing held: once
// the queue is free, the next operations go through, even though the
// timed-out wait is granted then.
func TestQueueLockTimesOut(t *testing.T) {
	s := jobs.New(filepath.Join(t.TempDir(), "overlord.db"), 100*time.Millisecond)
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	q, err := os.OpenFile(s.Path()+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := syscall.Flock(int(q.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Inventory(); !errors.Is(err, jobs.ErrLocked) {
		t.Fatalf("a read with the queue held: %v, want ErrLocked", err)
	}
	if err := s.AddMinion(jobs.Minion{Name: "web1", Addr: "127.0.0.1:1"}); !errors.Is(err, jobs.ErrLocked) {
		t.Fatalf("a write with the queue held: %v, want ErrLocked", err)
	}
	if err := syscall.Flock(int(q.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	slow := jobs.New(s.Path(), 10*time.Second)
	if err := slow.AddMinion(jobs.Minion{Name: "web1", Addr: "127.0.0.1:1"}); err != nil {
		t.Fatalf("a write once the queue is free: %v", err)
	}
	if inv, err := slow.Inventory(); err != nil || len(inv.Minions) != 1 {
		t.Fatalf("a read once the queue is free: %v, %+v", err, inv)
	}
}
