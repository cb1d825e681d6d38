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

// observe notes the outcome of a call of the pool to minion (its
// rpc.ClientConfig.Observe): an answer (err nil), or a failure to get
// one.
func (b *reachBook) observe(_ context.Context, minion string, err error) {
	var se *status.Error
	if err != nil && !errors.As(err, &se) {
		se = status.Errorf(status.KindInternal, "%v", err)
	}
	b.note(minion, se)
}

// note notes what a call to minion found: an answer (se nil), or an
// error. Only kinds unreachable and tls say the minion is out of reach;
// others (a timeout, a call its caller gave up on) say nothing.
func (b *reachBook) note(minion string, se *status.Error) {
	r := Reach{Reachable: se == nil, CheckedAt: time.Now().UTC()}
	if se != nil {
		if se.Kind != status.KindUnreachable && se.Kind != status.KindTLS {
			return
		}
		r.Kind, r.LastError = se.Kind, se.Message
	}
	b.mu.Lock()
	if b.m == nil {
		b.m = map[string]Reach{}
	}
	b.m[minion] = r
	b.mu.Unlock()
}

// counts counts the registered minions by what the book says of each:
// reachable, unreachable, or not seen since the service started (the
// metrics' overlord_minions gauge).
func (b *reachBook) counts(registered []string) (reachable, unreachable, unknown int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range registered {
		r, ok := b.m[n]
		switch {
		case !ok:
			unknown++
		case r.Reachable:
			reachable++
		default:
			unreachable++
		}
	}
	return reachable, unreachable, unknown
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
