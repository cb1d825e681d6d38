// Package jobs is the overlord's store, overlord.db: a bbolt file holding
// the job records, the minion registry and the groups.
//
// The same store can live in an etcd cluster instead (Open with an
// etcd://HOST:PORT address; docs/ha.md): the methods work on the storage
// interface of jobs/internal/kv, which a bbolt transaction (kv.Bolt) and
// the etcd adapter (jobs/internal/etcdkv) implement, with the layout
// below. What follows about opening the file per operation and its lock
// is bbolt's; on etcd a read is one revision's snapshot and a write an
// optimistic transaction, run again if what it read changed.
//
// # Basics
//
// Every method of Store opens the file, does one operation in one
// transaction and closes it again, so that short CLI processes and job
// drivers can share the file: no process holds it open longer than one
// operation. Reads take bbolt's shared lock, writes its exclusive lock;
// waiting for a lock is bounded by Store's lock timeout and ends in
// ErrLocked.
//
// # Layout
//
//	meta      schema_version -> "1"
//	          inventory_keep -> how many inventory versions to keep (the last number given)
//	minions   name -> JSON Minion
//	seen      name -> when it last answered (RFC 3339)
//	groups    name -> JSON []string (member names)
//	jobs      job ID -> bucket
//	            "job"     -> JSON Record (spec, state, summary)
//	            "minions" -> bucket: minion name -> JSON status.Result
//	tokens    token ID -> JSON Token (the SHA-256 of its secret, never the secret)
//	requests  minion name -> JSON CertRequest (its CSR, pending/signed/rejected/revoked)
//	certs     serial (hex) -> JSON Cert (every certificate the CA issued)
//	crl       "number" -> the current revocation list's number
//	          "der"    -> that list, signed by the CA
//	modcache  minion name -> JSON Described (its plugins, as 'overlord modules' last heard)
//	inventory       version (8 bytes, big-endian) -> JSON InventoryHead
//	inventory_data  version -> the version's snapshot (JSON, gzip; its shape is package overlord's)
//
// Job IDs are UUIDv7 strings, which sort by creation time, so listing the
// newest jobs is a reverse cursor walk. Each minion's result is a key of
// its own, so writing one costs the same for a job of 3 minions or 30,000;
// the Record keeps a running Summary so listing never reads the entries.
//
// The tokens, requests, certs, crl, modcache and inventory buckets came after schema version
// 1 and did not change it: a store without them reads as if they were
// empty, and the first write that needs one creates it.
//
// # Caveats
//
// Results are written in batches by the caller (see Write); a result is
// durable once Write returns.
package jobs
