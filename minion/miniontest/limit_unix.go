//go:build unix

package miniontest

import (
	"fmt"
	"syscall"
)

// FilesPerMinion is how many file descriptors a fleet needs per minion
// during a call to all of it: the minion's listener, both ends of the
// overlord's connection to it, its minion.db and its audit.log.
const FilesPerMinion = 5

// filesSpare is room left for everything else a test process opens.
const filesSpare = 256

// CheckFileLimit returns an error unless the process may open enough
// files for a fleet of n minions called all at once. The Go runtime
// raises the soft limit to the hard one at start, so the hard limit is
// what counts; raise it with `ulimit -Hn` (as root) or in limits.conf.
func CheckFileLimit(n int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("read the open-files limit: %w", err)
	}
	need := uint64(n*FilesPerMinion + filesSpare)
	if cur := uint64(lim.Cur); cur < need {
		return fmt.Errorf("a fleet of %d minions needs about %d open files; the limit is %d (raise it with 'ulimit -n %d')", n, need, cur, need)
	}
	return nil
}
