// Package fanout runs one call per target with bounded concurrency from a
// shared queue, so a slow target never holds back the others, and hands
// each result to the caller as it arrives.
package fanout

import (
	"context"
	"sync"
	"sync/atomic"
)

// DefaultForks is the default number of calls in flight.
const DefaultForks = 64

// Run calls call(ctx, t) for every target with at most forks calls in
// flight: each worker takes the next target from a shared queue as soon
// as it is free. Each result is passed to emit as it arrives, on the
// goroutine that called Run, so emit needs no locking. A failed target is
// data in its result, never a reason to stop the others; when ctx is done,
// targets not yet started are still passed to call, with the done ctx, so
// every target gets a result. Run returns when every result is emitted.
func Run[T, R any](ctx context.Context, targets []T, forks int, call func(context.Context, T) R, emit func(T, R)) {
	if forks <= 0 {
		forks = DefaultForks
	}
	forks = min(forks, len(targets))
	type item struct {
		t T
		r R
	}
	results := make(chan item, forks)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range forks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(targets)) {
					return
				}
				t := targets[i]
				results <- item{t, call(ctx, t)}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(results)
	}()
	for it := range results {
		emit(it.t, it.r)
	}
}
