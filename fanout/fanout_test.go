package fanout_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/overlordhq/overlord/fanout"
)

func targets(n int) []int {
	ts := make([]int, n)
	for i := range ts {
		ts[i] = i
	}
	return ts
}

func TestRunBoundsConcurrency(t *testing.T) {
	tests := []struct {
		targets, forks, wantMax int
	}{
		{100, 1, 1},
		{100, 4, 4},
		{100, 16, 16},
		{3, 10, 3},
		{10, 0, 10},  // 0 means the default, capped by the number of targets
		{10, -1, 10}, // so does a negative value
		{200, 0, fanout.DefaultForks},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d targets %d forks", tt.targets, tt.forks), func(t *testing.T) {
			var inFlight, peak atomic.Int32
			results := map[int]int{}
			fanout.Run(context.Background(), targets(tt.targets), tt.forks, func(_ context.Context, n int) int {
				cur := inFlight.Add(1)
				for {
					p := peak.Load()
					if cur <= p || peak.CompareAndSwap(p, cur) {
						break
					}
				}
				time.Sleep(2 * time.Millisecond)
				inFlight.Add(-1)
				return n * n
			}, func(n, r int) {
				results[n]++ // emit runs on Run's goroutine: no lock (checked by -race)
				if r != n*n {
					t.Errorf("target %d got result %d", n, r)
				}
			})
			if got := int(peak.Load()); got > tt.wantMax {
				t.Errorf("%d calls in flight, want at most %d", got, tt.wantMax)
			} else if got < tt.wantMax {
				// Not a correctness failure, but the pool should fill.
				t.Logf("peak %d in flight (limit %d)", got, tt.wantMax)
			}
			if len(results) != tt.targets {
				t.Errorf("%d targets got results, want %d", len(results), tt.targets)
			}
			for n, c := range results {
				if c != 1 {
					t.Errorf("target %d got %d results, want 1", n, c)
				}
			}
		})
	}
}

func TestRunNoTargets(t *testing.T) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fanout.Run(context.Background(), nil, 4, func(context.Context, int) int {
			t.Error("call with no targets")
			return 0
		}, func(int, int) { t.Error("emit with no targets") })
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run with no targets did not return")
	}
}

// With 2 workers and one target blocked, every other target completes:
// the blocked one holds one worker, never a bucket of targets.
func TestRunSlowTargetDoesNotHoldBackOthers(t *testing.T) {
	release := make(chan struct{})
	ts := targets(20)
	emitted := make(chan int, len(ts))
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		fanout.Run(context.Background(), ts, 2, func(_ context.Context, n int) int {
			if n == 0 {
				<-release
			}
			return n
		}, func(n, _ int) { emitted <- n })
	}()

	seen := map[int]bool{}
	timeout := time.After(5 * time.Second)
	for len(seen) < len(ts)-1 {
		select {
		case n := <-emitted:
			if n == 0 {
				t.Fatal("the blocked target was emitted before it was released")
			}
			seen[n] = true
		case <-timeout:
			t.Fatalf("only %d of %d other targets completed while one was blocked", len(seen), len(ts)-1)
		}
	}
	select {
	case <-finished:
		t.Fatal("Run returned before the blocked target finished")
	default:
	}
	close(release)
	select {
	case n := <-emitted:
		if n != 0 {
			t.Errorf("last result for target %d, want 0", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the released target never completed")
	}
	<-finished
}

// When ctx is done, targets not yet started are still called (with the
// done ctx) so that each gets a result.
func TestRunCancelledStillGivesEveryResult(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls, sawDone atomic.Int32
	got := 0
	fanout.Run(ctx, targets(50), 3, func(ctx context.Context, n int) error {
		calls.Add(1)
		if n == 5 {
			cancel()
		}
		if ctx.Err() != nil {
			sawDone.Add(1)
		}
		return ctx.Err()
	}, func(int, error) { got++ })
	if got != 50 || calls.Load() != 50 {
		t.Errorf("%d results from %d calls, want 50 each", got, calls.Load())
	}
	if sawDone.Load() == 0 {
		t.Error("no call saw the cancelled context")
	}
}

// Results are emitted as they arrive, not when the run ends.
func TestRunEmitsAsResultsArrive(t *testing.T) {
	release := make(chan struct{})
	var gaveUp atomic.Bool
	fanout.Run(context.Background(), []int{0, 1}, 2, func(_ context.Context, n int) int {
		if n == 1 {
			// finishes only after target 0 was emitted, or gives up
			select {
			case <-release:
			case <-time.After(10 * time.Second):
				gaveUp.Store(true)
			}
		}
		return n
	}, func(n, _ int) {
		if n == 0 {
			close(release)
		}
	})
	if gaveUp.Load() {
		t.Error("target 0's result was not emitted within 10s while target 1 was still running")
	}
}

func BenchmarkRun(b *testing.B) {
	ts := targets(10000)
	for b.Loop() {
		fanout.Run(context.Background(), ts, 64, func(_ context.Context, n int) int { return n }, func(int, int) {})
	}
}
