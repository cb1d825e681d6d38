package job

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/status"
)

// How often a Recorder writes results to overlord.db: after flushEvery
// results or flushInterval, whichever comes first.
const (
	flushEvery    = 1024
	flushInterval = 250 * time.Millisecond
)

// Recorder batches a job's per-minion results into overlord.db: a write
// after flushEvery results or flushInterval, whichever comes first (a
// timer writes what arrived even when nothing else does, so `job status`
// shows the results so far), and one final write. A failed write keeps
// its batch for the next one. Every result of a call is recorded through
// a Recorder, so it is where facts.all results are cached (cacheFacts).
// Its methods are safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	stop  chan struct{}
	done  chan struct{}
	store *jobs.Store
	rec   jobs.Record
	batch map[string]status.Result
	last  time.Time
	err   error // the last write's error, nil once a write succeeds
	// lost, if not nil, is the job's lock's Lost: once it is closed,
	// nothing more is written (another may drive the job now).
	lost <-chan struct{}
}

// NewRecorder starts recording job rec's results into store; Finish or
// Close stops its timer.
func NewRecorder(store *jobs.Store, rec jobs.Record) *Recorder {
	r := &Recorder{store: store, rec: rec, batch: map[string]status.Result{}, last: time.Now(),
		stop: make(chan struct{}), done: make(chan struct{})}
	go r.tick()
	return r
}

// tick writes a waiting batch every flushInterval until Finish or Close.
func (r *Recorder) tick() {
	defer close(r.done)
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.mu.Lock()
			if len(r.batch) > 0 && time.Since(r.last) >= flushInterval {
				r.flushLocked(nil)
			}
			r.mu.Unlock()
		}
	}
}

// StopOn makes the Recorder write nothing once lost is closed (a lost
// driver lock's Lost): its writes then fail with ErrLockLost.
func (r *Recorder) StopOn(lost <-chan struct{}) {
	r.mu.Lock()
	r.lost = lost
	r.mu.Unlock()
}

// Close stops the timer; it is called by Finish, and harmless twice.
func (r *Recorder) Close() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
}

// Add queues a result and writes the batch if it is due.
func (r *Recorder) Add(name string, res status.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batch[name] = res
	if len(r.batch) >= flushEvery || time.Since(r.last) >= flushInterval {
		r.flushLocked(nil)
	}
}

// Header returns the job's header as last written.
func (r *Recorder) Header() jobs.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rec
}

// Flush writes the batch (and mutate's change to the header, if any).
func (r *Recorder) Flush(mutate func(*jobs.Record) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.flushLocked(mutate)
}

func (r *Recorder) flushLocked(mutate func(*jobs.Record) error) error {
	if len(r.batch) == 0 && mutate == nil {
		return r.err
	}
	if isLost(r.lost) {
		return ErrLockLost
	}
	err := cacheFacts(r.store, r.rec, r.batch)
	if err == nil {
		var written jobs.Record
		if written, err = r.store.Write(r.rec.ID, r.batch, mutate); err == nil {
			r.rec = written
		}
	}
	r.last = time.Now()
	if err != nil {
		r.err = err
		return err
	}
	r.err = nil
	clear(r.batch)
	return nil
}

// Finish stops the timer, writes the batch and sets the job FINISHED.
func (r *Recorder) Finish() error {
	r.Close()
	return r.Flush(func(rec *jobs.Record) error {
		now := time.Now().UTC()
		rec.State, rec.FinishedAt = status.Finished, &now
		return nil
	})
}

// cacheFacts keeps the facts that the successful results of a facts.all
// job returned in their minions' registry records, where --where reads
// them: any facts.all call (overlord minion facts, --where's own fetch,
// a call or an async job of facts.all, a plugin's) refreshes them. It
// runs before the results are written, so a batch whose facts could not
// be cached is kept and both are tried again.
func cacheFacts(store *jobs.Store, rec jobs.Record, results map[string]status.Result) error {
	if rec.Module != "facts" || rec.Method != "all" {
		return nil
	}
	facts := map[string]map[string]any{}
	for name, r := range results {
		var f map[string]any
		if !r.OK || json.Unmarshal(r.Result, &f) != nil || f == nil {
			continue // not facts: nothing to keep
		}
		facts[name] = f
	}
	if len(facts) == 0 {
		return nil
	}
	return store.CacheFacts(facts)
}
