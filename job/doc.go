// Package job owns the life of a job on the overlord, used by the CLI,
// the detached driver and the service's scheduler alike. Storage is
// package jobs's (overlord.db: buckets, typed reads and writes); the
// policy about a job's life is here.
//
// # Basics
//
// A Keeper is one state directory's jobs: their records in overlord.db
// and their files in the drivers directory. It creates jobs (Create,
// which applies the automatic retention), holds a job's driver lock
// (Lock: whoever drives or runs the job holds it for as long as it does;
// Alive tells whether someone does), names the driver's log (LogPath),
// settles a synchronous job whose call died (SettleOrphan) and purges
// old jobs (Purge). Whoever deletes a job's record deletes its files in
// the same place, so the drivers directory never outlives overlord.db's
// rows.
//
// The driver lock is behind Locker: a flock(2) file per job on one
// machine (FileLocker, the default), or a key per job in etcd under the
// process's lease when the store is on etcd and several overlord serve
// replicas share it (EtcdLocker, Keeper.UseEtcd). An etcd lock can be
// lost (Lock.Lost: the lease is gone, or may be); a driver whose lock is
// lost stops at once, writing nothing more and calling no minion.
//
// A Recorder writes a job's per-minion results in batches.
//
// A Driver carries an async job (or a synchronous call carried on past
// its wait) to FINISHED under the job's driver lock: the detached
// driver process (overlord job drive) and the service's scheduler each
// run one, reaching minions through the Link their owner gives it.
//
// # Files
//
//	drivers/JOB.lock  flock(2)ed by the job's driver (or its synchronous call)
//	drivers/JOB.log   the detached driver's stdout and stderr
//
// With etcd, the locks are keys under the store's prefix instead:
// PREFIX drivers/job/JOB (see EtcdLocker).
package job
