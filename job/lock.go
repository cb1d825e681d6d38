package job

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// Lock is a job's driver lock, held: whoever drives or runs the job holds
// it for as long as it does. Close lets it go (harmless twice).
type Lock interface {
	io.Closer
	// Lost is closed if the lock is lost while held (an etcd lock whose
	// lease is gone, or may be): its holder must stop at once, write
	// nothing more of the job and call no minion for it, since another
	// may hold the lock now. nil for a lock that cannot be lost (flock).
	Lost() <-chan struct{}
}

// UntilLost returns ctx, cancelled too when l is lost (Lock.Lost), and
// onLost called first if it is; cancel releases what watches it. A lock
// that cannot be lost gives ctx itself, cancellable.
func UntilLost(ctx context.Context, l Lock, onLost func()) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	lost := l.Lost()
	if lost == nil {
		return ctx, cancel
	}
	go func() {
		select {
		case <-lost:
			if onLost != nil {
				onLost()
			}
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Locker takes jobs' driver locks: a flock(2) file per job in the
// drivers directory (FileLocker, for one machine), or a key per job in
// etcd under a lease (EtcdLocker, for several overlord serve replicas).
type Locker interface {
	// TryLock takes job id's driver lock, or returns ok=false if another
	// holder (another process, or another goroutine of this one) has it.
	TryLock(id string) (lock Lock, ok bool, err error)
	// Held reports whether someone holds job id's driver lock.
	Held(id string) bool
}

// FileLocker is the driver locks of one machine: an exclusive flock(2)
// on Dir/<job>.lock. The lock goes with the process (or the descriptor)
// that holds it, so a detached driver inherits it (FileLock.File).
type FileLocker struct{ Dir string }

// FileLock is a flock(2)ed lock file.
type FileLock struct{ f *os.File }

// NewFileLock wraps a lock file already locked: a detached driver's,
// handed to it as a descriptor (overlord job drive --lock-fd).
func NewFileLock(f *os.File) *FileLock { return &FileLock{f: f} }

// File is the locked file, for handing to a process that holds the lock
// on (a child inherits the open file, and with it the lock).
func (l *FileLock) File() *os.File { return l.f }

// Close closes the file, which lets the lock go.
func (l *FileLock) Close() error { return l.f.Close() }

// Lost returns nil: a flock lasts as long as its descriptor.
func (l *FileLock) Lost() <-chan struct{} { return nil }

func (l FileLocker) path(id string) string { return filepath.Join(l.Dir, id+".lock") }

// TryLock flocks Dir/<id>.lock without waiting.
func (l FileLocker) TryLock(id string) (Lock, bool, error) {
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return nil, false, err
	}
	f, err := os.OpenFile(l.path(id), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return &FileLock{f: f}, true, nil
}

// Held tries the lock and lets it go at once.
func (l FileLocker) Held(id string) bool {
	f, err := os.Open(l.path(id))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
