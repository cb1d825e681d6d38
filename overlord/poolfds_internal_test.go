//go:build unix

package overlord

import "testing"

// The pool's bound on connections leaves room under the open-files
// limit for what else the service opens, and none is set without a limit.
func TestPoolMaxConns(t *testing.T) {
	for _, tt := range []struct {
		limit uint64
		want  int
	}{
		{20000, 17500}, {1024, 768}, {300, 64}, {1 << 20, 1<<20 - 1<<17}, {0, 0}, {^uint64(0), 0},
	} {
		if got := maxConnsFor(tt.limit); got != tt.want {
			t.Errorf("open-files limit %d: %d connections, want %d", tt.limit, got, tt.want)
		}
	}
	if n := poolMaxConns(); n <= 0 {
		t.Errorf("poolMaxConns() = %d with this process's limit, want a bound", n)
	}
}
