package overlord

import (
	"time"

	"github.com/overlordhq/overlord/job"
)

// useEtcdLocks makes the jobs' driver locks etcd's when the store is on
// etcd (job.EtcdLocker), held under a lease of ttl (job.DefaultLeaseTTL
// if 0): several overlord serve replicas share the store, and each open
// job is driven by the one holding its lock (docs/ha.md, "Replicas").
func (o *Overlord) useEtcdLocks(ttl time.Duration) {
	cli, prefix := o.Store.Etcd()
	if cli == nil {
		return
	}
	if l, ok := o.Jobs.Locks.(*job.EtcdLocker); ok {
		l.Close()
	}
	o.Jobs.UseEtcd(cli, prefix, job.EtcdOptions{TTL: ttl, Timeout: o.Store.LockTimeout(), Logger: o.Logger.With("component", "locks")})
}

// SetLeaseTTL sets the TTL of the etcd lease under which this process
// holds its jobs' driver locks (overlord serve --lease-ttl): a replica
// that dies or is cut off lets its jobs go that long after its last
// renewal. Call it before any lock is taken; a no-op on a bbolt store.
func (o *Overlord) SetLeaseTTL(ttl time.Duration) { o.useEtcdLocks(ttl) }
