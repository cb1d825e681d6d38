package command_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/modules/command"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// max_output is at most what a reply carries (rpc.MaxOutput): beyond it
// the call is bad_args, naming the parameter and the limit, and nothing
// runs; the overlord's own Bind (before anything is sent) says the same.
func TestRunMaxOutputBound(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	limit := strconv.Itoa(rpc.MaxOutput)
	for _, v := range []any{float64(rpc.MaxOutput + 1), float64(300000000), float64(1 << 50), 1e300} {
		_, se := run(t, context.Background(), map[string]any{"cmd": "touch " + marker, "max_output": v})
		if se == nil || se.Kind != status.KindBadArgs || !strings.Contains(se.Message, "max_output") || !strings.Contains(se.Message, limit) && v.(float64) < 1<<53 {
			t.Errorf("max_output %v: %v; want bad_args naming max_output and %s", v, se, limit)
		}
		m := command.Module{}.Methods()[0]
		if _, err := m.Bind(map[string]any{"cmd": "true", "max_output": v}, nil); status.KindOf(err) != status.KindBadArgs || !strings.Contains(err.Error(), "max_output") {
			t.Errorf("Bind with max_output %v: %v; want bad_args naming %s", v, err, limit)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran")
	}
}

// At the limit, a command printing more gets max_output bytes and
// truncated.
func TestRunMaxOutputAtLimit(t *testing.T) {
	res, se := run(t, context.Background(), map[string]any{
		"cmd":        "head -c " + strconv.Itoa(rpc.MaxOutput+(1<<20)) + " /dev/zero | tr '\\0' '<'",
		"max_output": float64(rpc.MaxOutput),
	})
	if se != nil || len(res.Stdout) != rpc.MaxOutput || !res.Truncated || strings.Trim(res.Stdout, "<") != "" {
		t.Errorf("%d bytes of stdout, truncated %v, %v; want %d of '<', truncated", len(res.Stdout), res.Truncated, se, rpc.MaxOutput)
	}
}
