//go:build linux || darwin

package minion

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// auditRoom returns an error unless the file at path, size bytes long,
// can grow by need bytes: the process's file size limit (RLIMIT_FSIZE)
// allows it, and its file system has that much free (for root, counting
// the blocks kept for root).
func auditRoom(path string, size, need int64) error {
	var lim syscall.Rlimit
	// No limit is the largest value (RLIM_INFINITY, which differs by
	// system): anything past 2^62 bytes counts as none.
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err == nil && lim.Cur < 1<<62 && uint64(size+need) > lim.Cur {
		return fmt.Errorf("%s: %w (the process may write files of at most %d bytes, RLIMIT_FSIZE)", path, syscall.EFBIG, lim.Cur)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
		return fmt.Errorf("%s: %w", filepath.Dir(path), err)
	}
	free := uint64(st.Bavail)
	if os.Geteuid() == 0 {
		free = uint64(st.Bfree)
	}
	if free*uint64(st.Bsize) < uint64(need) {
		return fmt.Errorf("%s: %w (%d bytes free)", filepath.Dir(path), syscall.ENOSPC, free*uint64(st.Bsize))
	}
	return nil
}
