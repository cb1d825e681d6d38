package gate

import "syscall"

// RaiseFileLimit raises the process's soft limit of open files to its
// hard limit, as daemons do (Go's runtime already does on start; this
// makes sure of it), and returns the limit in force.
func RaiseFileLimit() (int, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, err
		}
	}
	const most = 1 << 30
	return int(min(lim.Cur, most)), nil
}
