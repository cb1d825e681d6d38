package jobs

import (
	"encoding/binary"
	"errors"
	"syscall"
	"time"
)

// The queue for overlord.db.
//
// bbolt takes overlord.db's flock itself, but only by polling: it tries
// every 50 ms and gives up after the lock timeout. With many processes
// after the lock at once (200 `call --async` and their drivers) that is a
// lottery: a process whose tries keep falling while someone else holds
// the lock waits far longer than its turn, and past the lock timeout it
// fails although the store was never stuck. So every operation first
// takes a blocking flock on a file of its own beside the store,
// overlord.db.lock: the kernel holds the waiters and wakes them the moment
// the lock is let go, instead of leaving each to poll.
//
// Writers hold it for their whole operation. Readers hold it only until
// their read-only open of overlord.db has its shared lock: readers still
// run together, but a reader that comes after a waiting writer queues
// behind it, so a stream of readers cannot starve a writer.
//
// The lock timeout bounds how long one holder may keep the queue, not the
// whole wait: each holder counts its turn in the file's first 8 bytes, and
// a waiter whose lock timeout passes while the count moved waits on. Only
// a queue that stood still for the lock timeout (a process stuck holding
// it) makes the wait fail with ErrLocked.
//
// A process that cannot open the file (a read-only state directory)
// goes without it: bbolt's own lock still keeps the store safe.

// lockSuffix names the queue file: overlord.db.lock.
const lockSuffix = ".lock"

// queueLock is a held overlord.db.lock; release lets it go.
type queueLock struct{ fd int }

func (l queueLock) release() {
	if l.fd >= 0 {
		_ = syscall.Close(l.fd) // closing the file drops its flock
	}
}

// lockQueue waits for overlord.db.lock until it is granted, or until the
// queue has not moved for timeout (ErrLocked).
func (s *Store) lockQueue(timeout time.Duration) (queueLock, error) {
	fd, err := syscall.Open(s.path+lockSuffix, syscall.O_RDWR|syscall.O_CREAT|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return queueLock{fd: -1}, nil
	}
	// Try without blocking first: no goroutine when the lock is free.
	if err := flockRetry(fd, syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		return held(fd), nil
	} else if !errors.Is(err, syscall.EWOULDBLOCK) {
		syscall.Close(fd)
		return queueLock{fd: -1}, nil
	}
	got := make(chan error, 1)
	if s.abandoned.Load() < maxAbandoned {
		go func() { got <- flockRetry(fd, syscall.LOCK_EX) }()
	} else {
		// Waits given up earlier still block threads of this process:
		// poll instead of adding one more.
		go func() {
			for {
				err := flockRetry(fd, syscall.LOCK_EX|syscall.LOCK_NB)
				if !errors.Is(err, syscall.EWOULDBLOCK) {
					got <- err
					return
				}
				time.Sleep(pollAbandoned)
			}
		}()
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	turns := queueTurns(fd)
	for {
		select {
		case err := <-got:
			if err != nil {
				syscall.Close(fd)
				return queueLock{fd: -1}, nil
			}
			return held(fd), nil
		case <-t.C:
		}
		if now := queueTurns(fd); now != turns {
			turns = now // the queue moves: wait on
			t.Reset(timeout)
			continue
		}
		// The waiting call cannot be taken back: when it is granted,
		// let go at once.
		s.abandoned.Add(1)
		go func() {
			<-got
			syscall.Close(fd)
			s.abandoned.Add(-1)
		}()
		return queueLock{fd: -1}, ErrLocked
	}
}

// A process whose waits for the queue keep timing out (a store held by a
// stuck process, and a driver that tries again and again) would leave one
// blocked thread per try until the lock is let go. Past maxAbandoned such
// waits, it polls every pollAbandoned instead.
const (
	maxAbandoned  = 8
	pollAbandoned = 50 * time.Millisecond
)

// held counts a turn of the queue and returns the lock.
func held(fd int) queueLock {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], queueTurns(fd)+1)
	_, _ = syscall.Pwrite(fd, b[:], 0) // a count that is not kept only shortens waits
	return queueLock{fd}
}

// queueTurns reads how many turns the queue has had (the count wraps).
func queueTurns(fd int) uint64 {
	var b [8]byte
	if n, _ := syscall.Pread(fd, b[:], 0); n != len(b) {
		return 0
	}
	return binary.LittleEndian.Uint64(b[:])
}

// flockRetry is flock(2), tried again when a signal interrupts it (the Go
// runtime signals its threads).
func flockRetry(fd, how int) error {
	for {
		err := syscall.Flock(fd, how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
