package overlord

import (
	"time"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/status"
)

// recorder batches a job's per-minion results into overlord.db: a write
// after flushEvery results or flushInterval, whichever comes first, and
// one final write. A failed write keeps its batch for the next one.
type recorder struct {
	store *jobs.Store
	rec   jobs.Record
	batch map[string]status.Result
	last  time.Time
	err   error // the last write's error, nil once a write succeeds
}

func newRecorder(store *jobs.Store, rec jobs.Record) *recorder {
	return &recorder{store: store, rec: rec, batch: map[string]status.Result{}, last: time.Now()}
}

// add queues a result and writes the batch if it is due.
func (r *recorder) add(name string, res status.Result) {
	r.batch[name] = res
	if len(r.batch) >= flushEvery || time.Since(r.last) >= flushInterval {
		r.flush(nil)
	}
}

// flush writes the batch (and mutate's change to the header, if any).
func (r *recorder) flush(mutate func(*jobs.Record) error) error {
	if len(r.batch) == 0 && mutate == nil {
		return r.err
	}
	written, err := r.store.Write(r.rec.ID, r.batch, mutate)
	r.last = time.Now()
	if err != nil {
		r.err = err
		return err
	}
	r.rec, r.err = written, nil
	clear(r.batch)
	return nil
}

// finish writes the batch and sets the job FINISHED.
func (r *recorder) finish() error {
	return r.flush(func(rec *jobs.Record) error {
		now := time.Now().UTC()
		rec.State, rec.FinishedAt = status.Finished, &now
		return nil
	})
}
