package overlord

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/overlordhq/overlord/status"
)

// Reach is what the overlord service last saw of a minion: whether its
// last call got an answer, and when.
type Reach struct {
	Reachable bool        `json:"reachable"`
	CheckedAt time.Time   `json:"checked_at"`
	LastError string      `json:"last_error,omitempty"`
	Kind      status.Kind `json:"last_error_kind,omitempty"`
}

// reachBook keeps each minion's Reach, as the pool's calls find it.
type reachBook struct {
	mu sync.Mutex
	m  map[string]Reach
}

// observe notes the outcome of a call to minion: an answer (err nil), or
// a failure to get one. A call its caller gave up on says nothing.
func (b *reachBook) observe(ctx context.Context, minion string, err error) {
	r := Reach{Reachable: err == nil, CheckedAt: time.Now().UTC()}
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return
		}
		var se *status.Error
		if errors.As(err, &se) {
			r.Kind = se.Kind
		}
		r.LastError = err.Error()
	}
	b.mu.Lock()
	if b.m == nil {
		b.m = map[string]Reach{}
	}
	b.m[minion] = r
	b.mu.Unlock()
}

// snapshot returns a copy of every minion's Reach.
func (b *reachBook) snapshot() map[string]Reach {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]Reach, len(b.m))
	for k, v := range b.m {
		out[k] = v
	}
	return out
}

// Reachability returns what the service has seen of each minion it has
// called (none for a minion it has not called since it started); nil
// outside the service.
func (o *Overlord) Reachability() map[string]Reach {
	if o.pool == nil {
		return nil
	}
	return o.pool.reach.snapshot()
}
