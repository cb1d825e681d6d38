// Package etcdkv is the jobs store's storage (package kv) on etcd: the
// buckets and keys of overlord.db as etcd keys under a prefix (the layout
// is in keys.go).
//
// A read transaction reads at one revision of the store: what it sees
// is one consistent snapshot, as in bbolt.
//
// A write transaction is optimistic. It reads at one revision, keeps its
// writes to itself (its own reads see them), and commits them in one etcd
// transaction whose compares fail if anything it read changed since that
// revision: each key it read (its modification revision, or for a bucket
// looked up its creation revision), each bucket it walked (no key of the
// range modified or created since, and the bucket's marker untouched: a
// delete in a bucket rewrites its marker, so that a walk notices keys
// gone). If they fail, the transaction runs again from the start (at
// least MaxAttempts times, until the timeout). Too many compares for one etcd transaction
// are folded into coarser ones (every level below a top-level bucket),
// which may fail when nothing read changed, never the other way.
//
// etcd bounds a transaction: --max-txn-ops (128 by default) operations
// and --max-request-bytes (1.5 MiB) of request. One record is one key,
// so a write of many records (a job of many minions) needs a server
// with higher bounds; the error says so.
package etcdkv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/overlordhq/overlord/jobs/internal/kv"
)

// MaxAttempts is how many times at least a write transaction runs when
// what it read keeps changing under it; it stops trying at the first
// conflict past both MaxAttempts tries and the DB's timeout.
const MaxAttempts = 16

// maxCompares bounds the compares of one commit before they are folded
// (etcd's default --max-txn-ops is 128).
const maxCompares = 100

// DB is a store under a prefix of an etcd cluster.
type DB struct {
	cli     *clientv3.Client
	prefix  string
	timeout time.Duration

	// retry is held by a write transaction of this process that is
	// trying again after a conflict: writers of one process that keep
	// meeting each other then take turns, as bbolt's writers do, instead
	// of failing each other's commits until the deadline (only other
	// processes' writes and first tries can still get in their way).
	retry chan struct{}
}

// New returns the store under prefix (which should end in "/"). Each
// request to etcd waits at most timeout.
func New(cli *clientv3.Client, prefix string, timeout time.Duration) *DB {
	return &DB{cli: cli, prefix: prefix, timeout: timeout, retry: make(chan struct{}, 1)}
}

// Client returns the etcd client.
func (d *DB) Client() *clientv3.Client { return d.cli }

// Prefix returns the store's key prefix.
func (d *DB) Prefix() string { return d.prefix }

// ErrConflict is returned when a write transaction found what it read
// changed MaxAttempts times in a row.
var ErrConflict = errors.New("the store kept changing under the write")

// View runs fn in a read transaction.
func (d *DB) View(ctx context.Context, fn func(kv.Tx) error) error {
	for {
		t := d.newTx(ctx, false)
		err := t.run(fn)
		if t.err != nil {
			if errors.Is(t.err, rpctypes.ErrCompacted) {
				continue // the revision it read at is gone: read again
			}
			return t.err
		}
		return err
	}
}

// Update runs fn in a write transaction and commits what it wrote; fn
// may run several times (see the package's doc), so it must only act on
// the transaction. If fn returns an error nothing is written.
func (d *DB) Update(ctx context.Context, fn func(kv.Tx) error) error {
	deadline := time.Now().Add(d.timeout)
	locked := false
	defer func() {
		if locked {
			<-d.retry
		}
	}()
	for attempt := 1; ; attempt++ {
		t := d.newTx(ctx, true)
		err := t.run(fn)
		if t.err != nil {
			if errors.Is(t.err, rpctypes.ErrCompacted) && attempt < MaxAttempts {
				continue
			}
			return t.err
		}
		if err != nil {
			return err
		}
		ok, err := t.commit()
		if err != nil || ok {
			return err
		}
		if attempt >= MaxAttempts && time.Now().After(deadline) {
			return fmt.Errorf("%w (%d tries in %s); try again", ErrConflict, attempt, d.timeout)
		}
		if !locked {
			// Take turns with this process's other writers that met a
			// conflict; the wait for the turn is bounded by the deadline.
			wait := time.NewTimer(max(time.Until(deadline), d.timeout/4))
			select {
			case d.retry <- struct{}{}:
				locked = true
				wait.Stop()
				continue
			case <-wait.C:
				return fmt.Errorf("%w (waited %s for this process's other writers); try again", ErrConflict, d.timeout)
			case <-ctx.Done():
				wait.Stop()
				return ctx.Err()
			}
		}
		// Another process's writes: a random pause, longer after each
		// conflict (up to 50 ms), before reading again.
		pause := time.Duration(rand.Int64N(int64(min(attempt*attempt, 50)) * int64(time.Millisecond)))
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// cached is what a transaction knows of one etcd key at its revision.
type cached struct {
	val       []byte // with its tag; nil: no key
	mod, crev int64
}

// write is a buffered write of one key: a value with its tag, or a
// delete (val nil).
type write struct {
	val []byte
}

type readKind uint8

const (
	readCreate readKind = iota + 1 // the key's existence and creation (a bucket looked up)
	readMod                        // the key's value
)

type scan struct {
	start, end string
	marker     string // the bucket's marker, "" at the top level
}

type tx struct {
	db       *DB
	ctx      context.Context
	writable bool
	rev      int64 // the revision read at; 0 until the first read
	err      error // the first failed request: the transaction is void

	cache  map[string]cached
	writes map[string]write
	// dels are the ranges of deleted buckets' contents, deleted in this
	// transaction; bumps the markers of the buckets a key was deleted in.
	dels  [][2]string
	bumps map[string]bool
	reads map[string]readKind
	scans []scan
	// misses counts the keys of a bucket (by its prefix) read one by one;
	// loaded are the buckets read whole (see lookupIn).
	misses map[string]int
	loaded map[string]bool
}

func (d *DB) newTx(ctx context.Context, writable bool) *tx {
	t := &tx{db: d, ctx: ctx, writable: writable, cache: map[string]cached{}, reads: map[string]readKind{}}
	if writable {
		t.writes = map[string]write{}
		t.bumps = map[string]bool{}
	}
	return t
}

func (t *tx) fail(err error) {
	if t.err == nil {
		t.err = t.db.describe(err)
	}
}

// abortTx is the panic with which a read that failed (etcd unreachable,
// an election, a compacted revision) stops the transaction's function at
// once, recovered by run: the function must not go on as if what it
// could not read did not exist (a bucket it made would be nil).
type abortTx struct{}

// run runs fn on t, stopping it at its first failed read: t.err says why.
func (t *tx) run(fn func(kv.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(abortTx); !ok {
				panic(r)
			}
			err = t.err
		}
	}()
	return fn(t)
}

// get fetches the keys of op (a range or one key) at the transaction's
// revision, fixing it at the first read.
func (t *tx) get(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if t.err != nil {
		return nil, t.err
	}
	if t.rev != 0 {
		opts = append(opts, clientv3.WithRev(t.rev))
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.db.timeout)
	defer cancel()
	resp, err := t.db.cli.Get(ctx, key, opts...)
	if err != nil {
		t.fail(err)
		panic(abortTx{}) // recovered by run: the transaction ends with t.err
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	return resp, nil
}

// deleted reports whether key is in a bucket deleted in this transaction.
func (t *tx) deleted(key string) bool {
	for _, r := range t.dels {
		if key >= r[0] && key < r[1] {
			return true
		}
	}
	return false
}

// lookup returns key's stored value (tagged; nil if none), as this
// transaction sees it, and records the read.
func (t *tx) lookup(key string, kind readKind) []byte { return t.lookupIn("", key, kind) }

// prefetchAfter is how many keys of one bucket a transaction reads one by
// one before it reads the whole bucket at once.
const prefetchAfter = 8

// lookupIn is lookup of a key of the bucket whose prefix is prefix ("":
// unknown). After prefetchAfter keys of the bucket read one by one, it
// reads the whole bucket in one request (a job's entries, the registry's
// minions for a batch of results), at the transaction's revision.
func (t *tx) lookupIn(prefix, key string, kind readKind) []byte {
	if w, ok := t.writes[key]; ok {
		return w.val
	}
	if t.deleted(key) {
		return nil
	}
	if t.reads[key] < kind {
		t.reads[key] = kind
	}
	if c, ok := t.cache[key]; ok {
		return c.val
	}
	if prefix != "" {
		if t.loaded[prefix] {
			t.cache[key] = cached{}
			return nil
		}
		if t.misses == nil {
			t.misses, t.loaded = map[string]int{}, map[string]bool{}
		}
		if t.misses[prefix]++; t.misses[prefix] > prefetchAfter {
			start, end := childRange(prefix)
			resp, err := t.get(start, clientv3.WithRange(end))
			if err != nil {
				return nil
			}
			for _, kv := range resp.Kvs {
				if _, ok := t.cache[string(kv.Key)]; !ok {
					t.cache[string(kv.Key)] = cached{val: kv.Value, mod: kv.ModRevision, crev: kv.CreateRevision}
				}
			}
			t.loaded[prefix] = true
			if _, ok := t.cache[key]; !ok {
				t.cache[key] = cached{}
			}
			return t.cache[key].val
		}
	}
	resp, err := t.get(key)
	if err != nil {
		return nil
	}
	c := cached{}
	if len(resp.Kvs) == 1 {
		kv := resp.Kvs[0]
		c = cached{val: kv.Value, mod: kv.ModRevision, crev: kv.CreateRevision}
	}
	t.cache[key] = c
	return c.val
}

func (t *tx) put(key string, val []byte) error {
	if !t.writable {
		return kv.ErrTxNotWritable
	}
	if t.err != nil {
		return t.err
	}
	if t.deleted(key) {
		return errors.New("etcd store: a bucket deleted and made again in one transaction is not supported")
	}
	t.writes[key] = write{val: val}
	return nil
}

func (t *tx) Writable() bool { return t.writable }

// root is the top level as a bucket.
func (t *tx) root() *bucket {
	return &bucket{tx: t, prefix: bucketPrefix(t.db.prefix, 0, nil)}
}

func (t *tx) Bucket(name []byte) kv.Bucket { return t.root().Bucket(name) }
func (t *tx) CreateBucket(name []byte) (kv.Bucket, error) {
	return t.root().CreateBucket(name)
}
func (t *tx) CreateBucketIfNotExists(name []byte) (kv.Bucket, error) {
	return t.root().CreateBucketIfNotExists(name)
}
func (t *tx) DeleteBucket(name []byte) error { return t.root().DeleteBucket(name) }
func (t *tx) ForEach(fn func(name []byte, b kv.Bucket) error) error {
	r := t.root()
	return r.ForEachBucket(func(k []byte) error { return fn(k, r.Bucket(k)) })
}

// commit writes what the transaction wrote if nothing it read changed;
// ok is false if something did.
func (t *tx) commit() (ok bool, err error) {
	if len(t.writes) == 0 && len(t.dels) == 0 {
		return true, nil
	}
	var ops []clientv3.Op
	for k, w := range t.writes {
		if w.val == nil {
			ops = append(ops, clientv3.OpDelete(k))
		} else {
			ops = append(ops, clientv3.OpPut(k, string(w.val)))
		}
	}
	for _, r := range t.dels {
		ops = append(ops, clientv3.OpDelete(r[0], clientv3.WithRange(r[1])))
	}
	for m := range t.bumps {
		if _, ok := t.writes[m]; ok || t.deleted(m) {
			continue // written anyway, or gone
		}
		if v := t.lookup(m, readCreate); v != nil {
			ops = append(ops, clientv3.OpPut(m, string(v)))
		}
	}
	if t.err != nil {
		return false, t.err
	}
	cmps := t.compares()
	ctx, cancel := context.WithTimeout(t.ctx, t.db.timeout)
	defer cancel()
	resp, err := t.db.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, t.db.describeCommit(err, len(ops), len(cmps), ops)
	}
	return resp.Succeeded, nil
}

// compares returns the conditions under which what the transaction read
// is still so.
func (t *tx) compares() []clientv3.Cmp {
	rev := t.rev
	if rev == 0 {
		return nil // it read nothing
	}
	var cmps []clientv3.Cmp
	keyCmp := func(k string, kind readKind) clientv3.Cmp {
		c := t.cache[k]
		if kind == readCreate {
			return clientv3.Compare(clientv3.CreateRevision(k), "=", c.crev)
		}
		return clientv3.Compare(clientv3.ModRevision(k), "=", c.mod)
	}
	for k, kind := range t.reads {
		if _, ok := t.cache[k]; ok {
			cmps = append(cmps, keyCmp(k, kind))
		}
	}
	for _, s := range t.scans {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.start), "<", rev+1).WithRange(s.end))
		if s.marker != "" {
			if _, ok := t.cache[s.marker]; ok {
				cmps = append(cmps, keyCmp(s.marker, readMod))
			}
		}
	}
	if len(cmps) <= maxCompares {
		return cmps
	}
	// Fold: per top-level bucket read, its marker's value and every
	// level below it unchanged since rev.
	top := bucketPrefix(t.db.prefix, 0, nil)
	buckets := map[string]bool{}
	name := func(key string) {
		rest, ok := strings.CutPrefix(key, t.db.prefix)
		if !ok {
			return
		}
		if _, rest, ok = strings.Cut(rest, "/"); ok {
			buckets[firstName(rest)] = true
		}
	}
	for k := range t.reads {
		if !strings.HasPrefix(k, top) { // top-level markers are compared as they are
			name(k)
		}
	}
	for _, s := range t.scans {
		if s.marker == "" {
			continue // the top level: its markers are compared below
		}
		name(s.start)
	}
	cmps = cmps[:0]
	for k, kind := range t.reads {
		if strings.HasPrefix(k, top) {
			if _, ok := t.cache[k]; ok {
				cmps = append(cmps, keyCmp(k, kind))
			}
		}
	}
	for _, s := range t.scans {
		if s.marker == "" {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.start), "<", rev+1).WithRange(s.end))
		}
	}
	for n := range buckets {
		m := top + n
		if _, ok := t.cache[m]; !ok {
			t.lookup(m, readMod)
		}
		cmps = append(cmps, keyCmp(m, readMod))
		for depth := 1; depth < MaxDepth; depth++ {
			p := bucketPrefix(t.db.prefix, depth, nil) + n + "/"
			start, end := childRange(p)
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(start), "<", rev+1).WithRange(end))
		}
	}
	return cmps
}

// firstName returns the escaped first name of a path (up to a '/' that
// is not an escaped one).
func firstName(path string) string {
	for i := 0; i < len(path); i++ {
		if path[i] == '/' {
			if i+1 < len(path) && path[i+1] == 0 {
				i++
				continue
			}
			return path[:i]
		}
	}
	return path
}

// describe turns a request's error into one that says what to do.
func (d *DB) describe(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: etcd at %s did not answer within %s", kv.ErrBusy, strings.Join(d.cli.Endpoints(), ","), d.timeout)
	case errors.Is(err, rpctypes.ErrCompacted):
		return err
	case errors.Is(err, context.Canceled):
		return err
	}
	return fmt.Errorf("etcd at %s: %w", strings.Join(d.cli.Endpoints(), ","), err)
}

func (d *DB) describeCommit(err error, nops, ncmps int, ops []clientv3.Op) error {
	switch {
	case errors.Is(err, rpctypes.ErrTooManyOps):
		return fmt.Errorf("this write needs %d operations (%d compares) in one etcd transaction, more than the etcd server allows: "+
			"run etcd with --max-txn-ops %d or more (its default is 128; docs/ha.md)", nops, ncmps, max(nops, ncmps))
	case errors.Is(err, rpctypes.ErrRequestTooLarge):
		size := 0
		for _, op := range ops {
			size += len(op.KeyBytes()) + len(op.ValueBytes()) + len(op.RangeBytes()) + 8
		}
		return fmt.Errorf("this write is about %d bytes in one etcd transaction, more than the etcd server allows: "+
			"run etcd with --max-request-bytes %d or more (its default is 1.5 MiB; docs/ha.md)", size, 2*size)
	}
	return d.describe(err)
}

// Empty reports whether no key at all is under the store's prefix.
func (d *DB) Empty(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	resp, err := d.cli.Get(ctx, d.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return false, d.describe(err)
	}
	return resp.Count == 0, nil
}

// DeleteAll deletes every key under the store's prefix.
func (d *DB) DeleteAll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	_, err := d.cli.Delete(ctx, d.prefix, clientv3.WithPrefix())
	if err != nil {
		return d.describe(err)
	}
	return nil
}
