package plugin

import (
	"io"
	"os"
	"strconv"
	"syscall"
)

// oPath is Linux's O_PATH (the same on every architecture Go supports
// there; package syscall does not define it for all of them): a
// descriptor that names a file without opening it for reading, enough to
// fstat and execute it.
const oPath = 0x200000

func ctimeOf(st *syscall.Stat_t) syscall.Timespec { return st.Ctim }

// openContent opens for reading the file f names (opened O_PATH, which
// cannot be read through): /proc/self/fd/N opens the very file f is,
// whatever its path names by now.
func openContent(f *os.File) (io.ReadCloser, error) {
	return os.Open("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
}
