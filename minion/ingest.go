package minion

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/overlordhq/overlord/status"
)

// ingest records the result file of job j, if its runner left one, and
// reports whether it did. A result may be hundreds of MiB of JSON: one is
// read at a time, and a job that another caller (a concurrent
// Minion.Status, the sweeper) finished meanwhile is not read again, so
// callers retrying do not pile up copies of the same result.
func (a *asyncJobs) ingest(j Job) (Job, bool, error) {
	dir := a.dir(j.ID)
	if _, err := os.Stat(filepath.Join(dir, resultFile)); errors.Is(err, fs.ErrNotExist) {
		return j, false, nil
	}
	a.ingestMu.Lock()
	defer a.ingestMu.Unlock()
	if cur, err := a.store.get(j.ID); err == nil && cur.State == status.Finished {
		return cur, true, nil
	}
	o, ok := spooledOutcome(dir)
	if !ok {
		return j, false, nil
	}
	j, err := a.finish(j.ID, o)
	return j, true, err
}
