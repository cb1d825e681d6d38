package job

import (
	"os"
	"path/filepath"
	"time"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/status"
)

// DriversDir is the directory of the job files, in the state directory.
const DriversDir = "drivers"

// Retention applied on its own: finished jobs older than DefaultRetention
// are purged as new jobs are created (Create), at most once per
// autoPurgeEvery and at most autoPurgeMax jobs at a time, oldest first,
// so the store cannot grow without bound and no single call pays for a
// large clean-up.
const (
	DefaultRetention = 30 * 24 * time.Hour
	autoPurgeEvery   = time.Hour
	autoPurgeMax     = 1000
)

// Keeper is the jobs of one state directory: their records in Store and
// their files in Dir. Its methods are safe to call from several
// goroutines and processes at once.
type Keeper struct {
	Store *jobs.Store
	// Dir is the directory of the driver locks and logs
	// (<state-dir>/drivers).
	Dir string
	// Locks are the jobs' driver locks: flock files in Dir if nil
	// (FileLocker), or etcd's (UseEtcd).
	Locks Locker
}

// New returns the Keeper of the jobs in store, with their files in the
// state directory stateDir.
func New(store *jobs.Store, stateDir string) *Keeper {
	dir := filepath.Join(stateDir, DriversDir)
	return &Keeper{Store: store, Dir: dir, Locks: FileLocker{Dir: dir}}
}

// lockPath is the file a job's driver holds an exclusive lock on for as
// long as it lives: the lock, not a pid, says whether it is alive.
func (k *Keeper) lockPath(id string) string { return filepath.Join(k.Dir, id+".lock") }

// LogPath is where job id's detached driver logs.
func (k *Keeper) LogPath(id string) string { return filepath.Join(k.Dir, id+".log") }

func (k *Keeper) locks() Locker {
	if k.Locks == nil {
		return FileLocker{Dir: k.Dir}
	}
	return k.Locks
}

// Lock takes job id's driver lock, or returns ok=false if another driver
// holds it. Closing the lock lets it go.
func (k *Keeper) Lock(id string) (lock Lock, ok bool, err error) {
	return k.locks().TryLock(id)
}

// Alive reports whether some process (or, in the service, some
// goroutine) holds job id's driver lock.
func (k *Keeper) Alive(id string) bool { return k.locks().Held(id) }

// Shared reports whether the driver locks are shared between machines
// (etcd): then jobs are driven only by overlord serve replicas, in their
// own processes, never by a detached driver process.
func (k *Keeper) Shared() bool {
	_, ok := k.Locks.(*EtcdLocker)
	return ok
}

// RemoveFiles deletes job id's lock and log: the job is purged, or a
// synchronous call that ran it to its end is done with it.
func (k *Keeper) RemoveFiles(id string) {
	os.Remove(k.lockPath(id))
	os.Remove(k.LogPath(id))
}

// Create stores a new job (jobs.Store.CreateJob) and applies the
// automatic retention in the same transaction, deleting the files of the
// jobs it purged.
func (k *Keeper) Create(rec *jobs.Record, minions []string) error {
	gone, err := k.Store.CreateJobPurging(rec, minions, jobs.AutoPurge{MaxAge: DefaultRetention, Every: autoPurgeEvery, Max: autoPurgeMax})
	k.removeAll(gone)
	return err
}

// Purge deletes FINISHED jobs created before cutoff, except the keep
// newest, with their files.
func (k *Keeper) Purge(cutoff time.Time, keep int) ([]string, error) {
	gone, err := k.Store.Purge(cutoff, keep)
	k.removeAll(gone)
	return gone, err
}

func (k *Keeper) removeAll(ids []string) {
	for _, id := range ids {
		k.RemoveFiles(id)
	}
}

// SettleOrphan finishes a synchronous job whose call ended before every
// minion answered: the minions that had not answered are FINISHED with
// kind lost. A job someone else holds the lock of is left alone.
func (k *Keeper) SettleOrphan(id string) error {
	lock, ok, err := k.Lock(id)
	if err != nil || !ok {
		return err
	}
	defer func() {
		lock.Close()
		k.RemoveFiles(id)
	}()
	rec, entries, err := k.Store.Job(id)
	if err != nil || rec.State == status.Finished {
		return err
	}
	lost := map[string]status.Result{}
	for n, e := range entries {
		if e.State != status.Finished {
			lost[n] = Finished(status.KindLost, "the overlord call running this job ended before this minion's answer was recorded")
		}
	}
	rc := NewRecorder(k.Store, rec)
	defer rc.Close()
	for n, r := range lost {
		rc.Add(n, r)
	}
	return rc.Finish()
}
