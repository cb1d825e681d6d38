package cli

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/status"
)

// With batches, only the minions of the batches started are running: the
// others wait their turn.
func TestProgressLineBatches(t *testing.T) {
	l := newProgressLine(io.Discard, false, "J", 5, time.Now())
	defer l.Stop()
	if got := l.text(); !strings.HasPrefix(got, "0/5 done: 0 ok, 0 failed, 5 running") {
		t.Errorf("no batches: %q", got)
	}
	l.Batch(1, 3, 2)
	l.Result("m1", status.Result{State: status.Finished, OK: true})
	if got := l.text(); !strings.HasPrefix(got, "1/5 done: 1 ok, 0 failed, 1 running") || !strings.Contains(got, "batch 1/3") {
		t.Errorf("batch 1 of 2 minions, one done: %q", got)
	}
}
