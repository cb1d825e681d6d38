package overlord

import (
	"context"
	"errors"
	"testing"

	"github.com/overlordhq/overlord/status"
)

// TestReachBook: an answer makes a minion reachable, a failure to reach
// it (unreachable, tls) unreachable with the error; other failures (a
// timeout, a call given up) change nothing; counts is what the metrics
// show.
func TestReachBook(t *testing.T) {
	var b reachBook
	ctx := context.Background()
	b.observe(ctx, "a", nil)
	b.observe(ctx, "b", status.Errorf(status.KindUnreachable, "connection refused"))
	b.observe(ctx, "c", status.Errorf(status.KindTLS, "bad certificate"))
	b.observe(ctx, "c", nil) // answered since
	b.observe(ctx, "a", status.Errorf(status.KindTimeout, "no answer in 5s"))
	b.observe(ctx, "a", errors.New("not a status error"))
	b.note("d", status.Errorf(status.KindCancelled, "ctrl-c"))
	snap := b.snapshot()
	if r := snap["a"]; !r.Reachable {
		t.Errorf("a: %+v, want reachable (a timeout says nothing)", r)
	}
	if r := snap["b"]; r.Reachable || r.Kind != status.KindUnreachable || r.LastError != "connection refused" || r.CheckedAt.IsZero() {
		t.Errorf("b: %+v", r)
	}
	if _, ok := snap["d"]; ok {
		t.Error("d: a cancelled call was taken as news")
	}
	if r, u, k := b.counts([]string{"a", "b", "c", "d", "e"}); r != 2 || u != 1 || k != 2 {
		t.Errorf("counts: %d reachable, %d unreachable, %d unknown; want 2, 1, 2", r, u, k)
	}
}
