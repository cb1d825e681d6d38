package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/status"
)

// Limits of the event streams.
const (
	// DefaultMaxEventStreams is how many event streams are open at once
	// unless Config.MaxEventStreams says otherwise; one more is answered
	// 503 (kind busy) at once. Streams hold their connections for as
	// long as their jobs run: the bound keeps them from taking every
	// connection the service's listener has (overlord.MaxEndpointConns).
	DefaultMaxEventStreams = 64
	// heartbeat is how often an idle event stream sends a comment, so
	// that proxies and clients see it alive.
	heartbeat = 15 * time.Second
	// eventWriteTimeout bounds one write to a stream's client: one that
	// takes no event for this long is dropped.
	eventWriteTimeout = 30 * time.Second
	// maxQueued bounds the events a stream's client has not taken
	// (bytes of data) when the next poll's come: past it, the client is
	// too slow and its stream ends. One poll's events are queued whole,
	// however big.
	maxQueued = 16 << 20
	// maxReplay bounds the output a job's watcher keeps to replay to
	// the streams that join it later, all minions together; each minion
	// keeps its last lines, between minReplay and maxReplayMinion bytes.
	maxReplay       = 32 << 20
	minReplay       = 16 << 10
	maxReplayMinion = 1 << 20
)

// resultEvent is the data of an event stream's "result" event.
type resultEvent struct {
	Minion string        `json:"minion"`
	Result status.Result `json:"result"`
}

// outputEvent is the data of an "output" event: complete lines a running
// minion job printed since the last one.
type outputEvent struct {
	Minion string `json:"minion"`
	Data   string `json:"data"`
}

// event is one Server-Sent Event, its data encoded once for every stream
// it goes to.
type event struct {
	name string
	data []byte
}

func newEvent(name string, v any) event {
	data, err := json.Marshal(v)
	if err != nil { // cannot happen: the documents were decoded from JSON
		data = []byte("null")
	}
	return event{name, data}
}

// stream is one client's event stream: the events its job's watcher has
// queued for the handler to write.
type stream struct {
	wake    chan struct{} // 1-buffered: there is something to take
	greeted bool          // it has had its "job" event; guarded by API.mu

	mu    sync.Mutex
	queue []event
	bytes int
	over  bool // no more events come: the job ended, or its watcher stopped
	slow  bool // ... because the client was too far behind
}

func newStream() *stream { return &stream{wake: make(chan struct{}, 1)} }

// push queues evs, one poll's events; a stream whose client has not
// taken more than maxQueued bytes of earlier ones is over instead.
func (s *stream) push(evs ...event) {
	s.mu.Lock()
	switch {
	case s.over:
	case s.bytes > maxQueued:
		s.queue, s.bytes, s.over, s.slow = nil, 0, true, true
	default:
		for _, e := range evs {
			s.queue = append(s.queue, e)
			s.bytes += len(e.data)
		}
	}
	s.mu.Unlock()
	s.signal()
}

// end marks the stream over once its queue is taken.
func (s *stream) end() {
	s.mu.Lock()
	s.over = true
	s.mu.Unlock()
	s.signal()
}

func (s *stream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take returns the events queued, and whether the stream is over.
func (s *stream) take() (evs []event, over, slow bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	evs, s.queue, s.bytes = s.queue, nil, 0
	return evs, s.over, s.slow
}

// watcher follows one job for every stream open on it: one look at the
// store and one round of output reads per poll, however many streams
// there are.
type watcher struct {
	id      string
	streams map[*stream]bool // guarded by API.mu
	kick    chan struct{}    // 1-buffered: a stream has joined
}

// join adds a stream of job rec (whose entries are as given) to the
// job's watcher, starting one if there is none; nil once the API is
// closed. The stream's first event is "job", from the watcher.
func (a *API) join(rec jobs.Record, entries map[string]status.Result) *stream {
	s := newStream()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	w := a.watchers[rec.ID]
	if w == nil {
		w = &watcher{id: rec.ID, streams: map[*stream]bool{}, kick: make(chan struct{}, 1)}
		a.watchers[rec.ID] = w
		a.wg.Add(1)
		go a.watch(w, rec, entries)
	}
	w.streams[s] = true
	a.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return s
}

// leave removes a stream from its job's watcher, which stops at its next
// round if it has none left.
func (a *API) leave(rec jobs.Record, s *stream) {
	a.mu.Lock()
	if w := a.watchers[rec.ID]; w != nil {
		delete(w.streams, s)
	}
	a.mu.Unlock()
}

// greet sends the streams that joined since the last time their "job"
// event (the job as the watcher last saw it, which the events that follow
// change) and the output so far that w keeps. It returns false, and
// removes the watcher, if no stream is left.
func (a *API) greet(w *watcher, rec jobs.Record, entries map[string]status.Result, replay *replay) bool {
	var fresh []*stream
	a.mu.Lock()
	if len(w.streams) == 0 {
		delete(a.watchers, w.id)
		a.mu.Unlock()
		return false
	}
	for s := range w.streams {
		if !s.greeted {
			s.greeted = true
			fresh = append(fresh, s)
		}
	}
	a.mu.Unlock()
	if len(fresh) > 0 {
		hello := append([]event{newEvent("job", rec.Status(entries))}, replay.events()...)
		for _, s := range fresh {
			s.push(hello...)
		}
	}
	return true
}

// replay is the output a watcher has sent, each minion's last lines, for
// the streams that join later.
type replay struct {
	keep  int // bytes per minion
	lines map[string][]byte
}

func newReplay(minions int) *replay {
	return &replay{keep: min(max(maxReplay/max(minions, 1), minReplay), maxReplayMinion), lines: map[string][]byte{}}
}

// add keeps lines, complete lines minion printed, cutting the oldest
// whole lines past r.keep bytes.
func (r *replay) add(minion, lines string) {
	b := append(r.lines[minion], lines...)
	if len(b) > r.keep {
		cut := len(b) - r.keep
		if i := bytes.IndexByte(b[cut:], '\n'); i >= 0 && cut+i+1 < len(b) {
			cut += i + 1
		}
		b = append([]byte(nil), b[cut:]...)
	}
	r.lines[minion] = b
}

// events returns an output event per minion with the lines kept.
func (r *replay) events() []event {
	var evs []event
	for _, n := range slices.Sorted(maps.Keys(r.lines)) {
		evs = append(evs, newEvent("output", outputEvent{n, string(r.lines[n])}))
	}
	return evs
}

// broadcast queues evs for every stream of w that has had its "job"
// event. With last (the end), every stream gets it, "job" first for those
// that have not had one, and w stops: its streams are over.
func (a *API) broadcast(w *watcher, evs []event, last *event, rec jobs.Record, entries map[string]status.Result) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var job *event
	for s := range w.streams {
		switch {
		case s.greeted:
			s.push(evs...)
		case last != nil:
			if job == nil {
				e := newEvent("job", rec.Status(entries))
				job = &e
			}
			s.push(*job)
		}
		if last != nil {
			s.push(*last)
		}
	}
	if last != nil {
		a.unwatchLocked(w)
	}
}

// unwatch ends w's streams and forgets w.
func (a *API) unwatch(w *watcher) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.unwatchLocked(w)
}

func (a *API) unwatchLocked(w *watcher) {
	if a.watchers[w.id] == w {
		delete(a.watchers, w.id)
	}
	for s := range w.streams {
		s.end()
	}
	clear(w.streams)
}

// watch is w's loop, from the job as rec and entries show it: every poll
// (and, on an etcd store, every change to the job a watch reports),
// it reads the job, then the output its running minion jobs printed since
// the last poll, and queues for the streams the output, then the entries
// that changed (so a minion's output comes before the result that
// finishes it), then, once the job is FINISHED, the end.
func (a *API) watch(w *watcher, rec jobs.Record, entries map[string]status.Result) {
	defer a.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-a.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	last := make(map[string][]byte, len(entries))
	for n, e := range entries {
		last[n], _ = json.Marshal(e)
	}
	kept := newReplay(len(entries))
	follower, err := a.o.Follower(rec)
	if err != nil {
		a.logger.Warn("api: events without output", "job", rec.ID, "err", err)
	} else {
		defer follower.Close()
	}
	tick := time.NewTicker(a.poll)
	defer tick.Stop()
	// On etcd, a write by any replica wakes the watcher at once, and a
	// tick reads only the minions' output, and the job every
	// watchedReread in case a watch missed something; on bbolt every
	// tick reads the job.
	changes := a.o.Store.Changes(ctx, rec.ID)
	var readAt time.Time
	for {
		changed := false
		select {
		case <-ctx.Done():
			a.unwatch(w)
			return
		case <-w.kick:
			if !a.greet(w, rec, entries, kept) {
				return
			}
			continue
		case <-tick.C:
		case _, ok := <-changes:
			if !ok {
				changes = nil // ctx ended
				continue
			}
			changed = true
		}
		if !a.greet(w, rec, entries, kept) {
			return
		}
		nrec, nentries := rec, entries
		if changes == nil || changed || time.Since(readAt) >= watchedReread {
			readAt = time.Now()
			nrec, nentries, err = a.o.Store.Job(rec.ID)
			if err != nil {
				a.logger.Warn("api: events", "job", rec.ID, "err", err)
				a.unwatch(w)
				return
			}
		}
		var evs []event
		emit := func(minion, lines string) {
			evs = append(evs, newEvent("output", outputEvent{minion, lines}))
			kept.add(minion, lines)
		}
		if follower != nil {
			follower.Read(ctx, nentries, emit)
		}
		for _, n := range slices.Sorted(maps.Keys(nentries)) {
			b, _ := json.Marshal(nentries[n])
			if bytes.Equal(b, last[n]) {
				continue
			}
			last[n] = b
			evs = append(evs, newEvent("result", resultEvent{n, nentries[n]}))
		}
		rec, entries = nrec, nentries
		if rec.State != status.Finished {
			a.broadcast(w, evs, nil, rec, entries)
			continue
		}
		if follower != nil {
			follower.Flush(emit)
		}
		end := newEvent("end", rec.Status(entries))
		a.broadcast(w, evs, &end, rec, entries)
		return
	}
}

// watchedReread is how often a watcher of a job on an etcd store reads
// the job with no change reported.
const watchedReread = 5 * time.Second

// sseWriter writes a stream's events, each under a deadline, so that a
// client that stops reading is dropped; interrupt cuts a write short at
// once (the request or the API has ended).
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController

	mu      sync.Mutex
	stopped bool
}

// deadline sets the next write's deadline: eventWriteTimeout from now,
// or now once interrupted.
func (s *sseWriter) deadline() {
	s.mu.Lock()
	d := time.Now()
	if !s.stopped {
		d = d.Add(eventWriteTimeout)
	}
	_ = s.rc.SetWriteDeadline(d)
	s.mu.Unlock()
}

func (s *sseWriter) interrupt() {
	s.mu.Lock()
	s.stopped = true
	_ = s.rc.SetWriteDeadline(time.Now())
	s.mu.Unlock()
}

// interruptOn interrupts the writer when ctx or done ends, until stop
// is called; stop returns once that can no longer happen.
func (s *sseWriter) interruptOn(ctx context.Context, done <-chan struct{}) (stop func()) {
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case <-ctx.Done():
		case <-done:
		case <-quit:
			return
		}
		s.interrupt()
	}()
	return func() {
		close(quit)
		<-finished
	}
}

// send writes evs, each flushed under its own deadline.
func (s *sseWriter) send(evs ...event) error {
	for _, e := range evs {
		s.deadline()
		if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", e.name, e.data); err != nil {
			return err
		}
		if err := s.rc.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// comment writes a comment line, which keeps the stream seen alive.
func (s *sseWriter) comment() error {
	s.deadline()
	if _, err := fmt.Fprint(s.w, ": keep-alive\n\n"); err != nil {
		return err
	}
	return s.rc.Flush()
}

// events is GET /v1/jobs/{id}/events, a Server-Sent Events stream: "job"
// (the job document) first; then "output" as running minion jobs' output
// grows, "result" when a minion's entry changes (state, minion job,
// result), a minion's output before the result that finishes it; "end"
// with the final job document when the job is FINISHED, and the stream
// ends. The streams of one job share one watcher (see watch). A client
// that reconnects gets "job" again, with every entry as it stands.
func (a *API) events(w http.ResponseWriter, r *http.Request) {
	rec, entries, err := a.o.Store.Job(r.PathValue("id"))
	if err != nil {
		a.storeError(w, err)
		return
	}
	select {
	case a.slots <- struct{}{}:
		defer func() { <-a.slots }()
	default:
		writeError(w, http.StatusServiceUnavailable, KindBusy, "%d event streams are open, as many as the service keeps; try again later", cap(a.slots))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	out := &sseWriter{w: w, rc: http.NewResponseController(w)}
	stop := out.interruptOn(r.Context(), a.done)
	defer stop()
	if rec.State == status.Finished {
		_ = out.send(newEvent("job", rec.Status(entries)), newEvent("end", rec.Status(entries)))
		return
	}
	if err := out.comment(); err != nil { // the headers, at once
		return
	}
	s := a.join(rec, entries)
	if s == nil {
		return
	}
	defer a.leave(rec, s)
	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-s.wake:
		case <-beat.C:
			if out.comment() != nil {
				return
			}
			continue
		case <-r.Context().Done():
			return
		case <-a.done:
			return
		}
		evs, over, slow := s.take()
		if len(evs) > 0 {
			if err := out.send(evs...); err != nil {
				a.logger.Info("api: event stream ended: its client took no event", "job", rec.ID, "from", r.RemoteAddr, "err", err)
				return
			}
			beat.Reset(heartbeat)
		}
		if slow {
			a.logger.Warn("api: event stream ended: its client fell too far behind", "job", rec.ID, "from", r.RemoteAddr)
		}
		if over {
			return
		}
	}
}
