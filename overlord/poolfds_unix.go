//go:build unix

package overlord

import "syscall"

// poolMaxConns is how many connections to minions the service's pool may
// hold open at once (rpc.ClientConfig.MaxConns): the process's limit on
// open files (which Go raises to the hard limit at start), less an eighth
// of it, at least 256, for everything else the service opens (the local
// socket's and the API's connections, overlord.db, logs). 0 (no bound)
// if the limit is unknown or unlimited.
func poolMaxConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return maxConnsFor(rl.Cur)
}

// maxConnsFor is poolMaxConns for an open-files limit.
func maxConnsFor(limit uint64) int {
	if limit == 0 || limit >= 1<<31 { // RLIM_INFINITY, or as good as
		return 0
	}
	n := int(limit)
	return max(n-max(n/8, 256), 64)
}
