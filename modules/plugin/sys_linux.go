package plugin

import "syscall"

// oPath is Linux's O_PATH (the same on every architecture Go supports
// there; package syscall does not define it for all of them): a
// descriptor that names a file without opening it for reading, enough to
// fstat and execute it.
const oPath = 0x200000

func ctimeOf(st *syscall.Stat_t) syscall.Timespec { return st.Ctim }
