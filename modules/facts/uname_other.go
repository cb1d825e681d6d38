//go:build !linux

package facts

import (
	"fmt"
	"runtime"
)

// uname is not implemented outside Linux.
func uname() (Uname, error) {
	return Uname{}, fmt.Errorf("uname is not implemented on %s", runtime.GOOS)
}
