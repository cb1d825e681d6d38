package minion

import (
	"io/fs"
	"syscall"
)

// fileChange returns what, beside size and modification time, tells a
// file replaced or rewritten: its inode and its change time (which a
// write or a rename updates and which cannot be set back).
func fileChange(fi fs.FileInfo) (ino uint64, ctime int64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino, st.Ctim.Nano()
	}
	return 0, 0
}
