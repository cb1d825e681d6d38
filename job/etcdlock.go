package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// DefaultLeaseTTL is the TTL of the lease an EtcdLocker holds its jobs'
// locks under: a replica that dies lets its jobs go this long after its
// last renewal.
const DefaultLeaseTTL = 5 * time.Second

// Keys of the driver locks, under the store's prefix (outside the
// store's own keys, prefix+"0/" ... prefix+"9/"):
//
//	PREFIX drivers/job/JOB  held by JOB's driver: created only if absent, under its
//	                        process's lease; its value names the holder (host pid)
//	PREFIX drivers/wake     put with a job ID: a job was recorded (or handed
//	                        over) for a replica to drive
const (
	etcdLocksDir = "drivers/"
	etcdJobKeys  = "job/"
	etcdWakeKey  = "wake"
)

// EtcdOptions tune an EtcdLocker.
type EtcdOptions struct {
	// TTL is the lease's time to live (DefaultLeaseTTL if 0); etcd
	// rounds it up to whole seconds and to its own minimum.
	TTL time.Duration
	// Timeout bounds each request to etcd (10 s if 0).
	Timeout time.Duration
	// Logger logs the loss of the lease (nothing if nil).
	Logger *slog.Logger
}

// EtcdLocker is the driver locks of jobs in an etcd cluster, shared by
// every overlord serve replica (and CLI) on the cluster. A process holds
// one lease (a concurrency.Session) for all the locks it holds; a job's
// lock is a key created only if absent, attached to that lease, so it
// goes when the process lets it go, or when its lease expires (the
// process died or was cut off from etcd).
//
// A lease is held only while etcd says so: the locker renews it every
// TTL/4 and counts its TTL from when it sent the renewal etcd answered,
// so its view of the lease ends before etcd's. When that view runs out (no
// answer), or etcd says the lease is gone, every lock held under it is
// lost (Lock.Lost) at once, the locker logs it and makes a new lease for
// the locks it takes next.
type EtcdLocker struct {
	cli     *clientv3.Client
	keys    string // PREFIX drivers/
	ttl     time.Duration
	timeout time.Duration
	logger  *slog.Logger
	owner   string

	mu     sync.Mutex
	sess   *etcdSession
	held   map[string]*etcdLock
	closed bool
}

// NewEtcdLocker returns the locks of the jobs of the store under prefix
// (its key prefix, ending in "/") in the cluster cli reaches.
func NewEtcdLocker(cli *clientv3.Client, prefix string, opts EtcdOptions) *EtcdLocker {
	if opts.TTL <= 0 {
		opts.TTL = DefaultLeaseTTL
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	return &EtcdLocker{cli: cli, keys: prefix + etcdLocksDir, ttl: opts.TTL, timeout: opts.Timeout,
		logger: opts.Logger, owner: fmt.Sprintf("%s pid %d", host, os.Getpid()), held: map[string]*etcdLock{}}
}

// UseEtcd makes k's driver locks etcd's (see EtcdLocker).
func (k *Keeper) UseEtcd(cli *clientv3.Client, prefix string, opts EtcdOptions) *EtcdLocker {
	l := NewEtcdLocker(cli, prefix, opts)
	k.Locks = l
	return l
}

// etcdSession is the lease a process's locks are held under.
type etcdSession struct {
	s    *concurrency.Session
	ttl  time.Duration // as granted
	lost chan struct{} // closed when the lease is lost, or may be
	once sync.Once
	quit chan struct{} // closed by Close: stop watching the lease
}

func (l *EtcdLocker) jobKey(id string) string { return l.keys + etcdJobKeys + id }

func (l *EtcdLocker) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(l.cli.Ctx(), l.timeout)
}

// session returns the lease to hold locks under, granting one if there
// is none (or it was lost). Called with l.mu held.
func (l *EtcdLocker) session() (*etcdSession, error) {
	if l.closed {
		return nil, errors.New("the job locks are closed")
	}
	if es := l.sess; es != nil {
		select {
		case <-es.lost:
		default:
			return es, nil
		}
	}
	ctx, cancel := l.ctx()
	defer cancel()
	asked := time.Now()
	grant, err := l.cli.Grant(ctx, int64((l.ttl+time.Second-1)/time.Second))
	if err != nil {
		return nil, fmt.Errorf("etcd: a lease for the job locks: %w", err)
	}
	// The session's own context is the client's: its keepalives last
	// until Close, not until this request's timeout.
	s, err := concurrency.NewSession(l.cli, concurrency.WithLease(grant.ID), concurrency.WithTTL(int(grant.TTL)))
	if err != nil {
		l.revoke(grant.ID)
		return nil, fmt.Errorf("etcd: keeping the job locks' lease alive: %w", err)
	}
	es := &etcdSession{s: s, ttl: time.Duration(grant.TTL) * time.Second, lost: make(chan struct{}), quit: make(chan struct{})}
	l.sess = es
	go l.watchLease(es, asked.Add(es.ttl))
	return es, nil
}

func (l *EtcdLocker) revoke(id clientv3.LeaseID) {
	ctx, cancel := l.ctx()
	defer cancel()
	_, _ = l.cli.Revoke(ctx, id)
}

// leaseCheckMargin is how long before its own view of the lease runs
// out the locker gives the lease up: time for the drivers to stop.
func leaseCheckMargin(ttl time.Duration) time.Duration { return min(ttl/8, 500*time.Millisecond) }

// watchLease renews the lease itself every TTL/4 (KeepAliveOnce, on top
// of the session's own keepalives) and gives it up (lose) when etcd says
// it is gone, or before it could have expired without an answer: valid
// is when it could expire, counted from when the last renewal etcd
// answered was sent (etcd renewed it after that).
func (l *EtcdLocker) watchLease(es *etcdSession, valid time.Time) {
	margin := leaseCheckMargin(es.ttl)
	every := es.ttl / 4
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-es.quit:
			return
		case <-es.s.Done():
			l.lose(es, "etcd stopped renewing the lease")
			return
		case <-t.C:
		}
		asked := time.Now()
		ctx, cancel := context.WithDeadline(l.cli.Ctx(), valid.Add(-margin))
		resp, err := l.cli.KeepAliveOnce(ctx, es.s.Lease())
		cancel()
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			l.lose(es, "etcd says the lease expired")
			return
		case err == nil && resp.TTL > 0:
			valid = asked.Add(time.Duration(resp.TTL) * time.Second)
		}
		left := time.Until(valid.Add(-margin))
		if left <= 0 {
			l.lose(es, fmt.Sprintf("no renewal of the lease within its time to live (%v)", err))
			return
		}
		t.Reset(min(every, left))
	}
}

// lose gives up the lease es: every lock held under it is lost at once.
func (l *EtcdLocker) lose(es *etcdSession, why string) {
	first := false
	es.once.Do(func() { close(es.lost); first = true })
	if !first {
		return
	}
	l.mu.Lock()
	if l.sess == es {
		l.sess = nil
	}
	var jobs []string
	for id, lk := range l.held {
		if lk.sess == es {
			jobs = append(jobs, id)
		}
	}
	closed := l.closed
	l.mu.Unlock()
	if !closed {
		l.logger.Error("CUT OFF FROM ETCD: the lease on the job locks is lost; stopping every job driven here at once (another replica adopts them)",
			"why", why, "jobs", len(jobs), "lease", fmt.Sprintf("%x", es.s.Lease()))
	}
	// If etcd still has the lease, its keys go with it now, not at its
	// expiry: the jobs are free for another replica at once.
	go func() {
		es.s.Orphan()
		l.revoke(es.s.Lease())
	}()
}

// etcdLock is a job's lock key, held under a lease.
type etcdLock struct {
	l    *EtcdLocker
	id   string
	sess *etcdSession
	once sync.Once
}

func (lk *etcdLock) Lost() <-chan struct{} { return lk.sess.lost }

// Close deletes the key, if it is still this lease's.
func (lk *etcdLock) Close() error {
	var err error
	lk.once.Do(func() {
		l := lk.l
		select {
		case <-lk.sess.lost:
			// The lease is revoked (lose) or expired, and the key with it.
		default:
			key := l.jobKey(lk.id)
			ctx, cancel := l.ctx()
			_, err = l.cli.Txn(ctx).
				If(clientv3.Compare(clientv3.LeaseValue(key), "=", lk.sess.s.Lease())).
				Then(clientv3.OpDelete(key)).Commit()
			cancel()
			if err != nil {
				err = fmt.Errorf("etcd: letting job %s's lock go (it goes with the lease): %w", lk.id, err)
			}
		}
		l.mu.Lock()
		if l.held[lk.id] == lk {
			delete(l.held, lk.id)
		}
		l.mu.Unlock()
	})
	return err
}

// TryLock creates job id's key under this process's lease if no one holds
// it. A job this process holds already is not taken twice.
func (l *EtcdLocker) TryLock(id string) (Lock, bool, error) {
	if id == "" || strings.Contains(id, "/") {
		return nil, false, fmt.Errorf("job ID %q cannot name a lock", id)
	}
	lk, ok, err := l.tryLock(id)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		// The lease expired in etcd before this process saw it go (a
		// stall longer than its TTL): give it up, as watchLease would,
		// and try once more under a new one.
		l.lose(lk.sess, "etcd says the lease expired")
		lk, ok, err = l.tryLock(id)
	}
	if !ok {
		return nil, false, err
	}
	return lk, true, nil
}

// tryLock is one try of TryLock under the current lease; lk is the lock
// tried (nil if there was no lease to try under).
func (l *EtcdLocker) tryLock(id string) (*etcdLock, bool, error) {
	l.mu.Lock()
	if l.held[id] != nil {
		l.mu.Unlock()
		return nil, false, nil
	}
	es, err := l.session()
	if err != nil {
		l.mu.Unlock()
		return nil, false, err
	}
	lk := &etcdLock{l: l, id: id, sess: es}
	l.held[id] = lk // no other goroutine here tries it meanwhile
	l.mu.Unlock()
	ok, err := l.acquire(lk)
	if !ok {
		l.mu.Lock()
		delete(l.held, id)
		l.mu.Unlock()
		return lk, false, err
	}
	return lk, true, nil
}

func (l *EtcdLocker) acquire(lk *etcdLock) (bool, error) {
	key := l.jobKey(lk.id)
	lease := lk.sess.s.Lease()
	ctx, cancel := l.ctx()
	defer cancel()
	resp, err := l.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, l.owner, clientv3.WithLease(lease))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return false, fmt.Errorf("etcd: job %s's lock: %w", lk.id, err)
	}
	if !resp.Succeeded {
		// Held, unless by this lease: an earlier try whose answer was
		// lost did create it, and nobody here holds it.
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 || clientv3.LeaseID(kvs[0].Lease) != lease {
			return false, nil
		}
	}
	select {
	case <-lk.sess.lost:
		return false, nil
	default:
		return true, nil
	}
}

// Held reports whether job id's key exists (or this process holds it).
// If etcd cannot say, it reports true: nobody starts a driver on a guess.
func (l *EtcdLocker) Held(id string) bool {
	l.mu.Lock()
	mine := l.held[id] != nil
	l.mu.Unlock()
	if mine {
		return true
	}
	ctx, cancel := l.ctx()
	defer cancel()
	resp, err := l.cli.Get(ctx, l.jobKey(id), clientv3.WithCountOnly())
	if err != nil {
		l.logger.Warn("etcd: cannot tell whether a job's driver lock is held; taking it as held", "job", id, "err", err)
		return true
	}
	return resp.Count > 0
}

// HeldAll returns the jobs whose locks someone holds, in one request:
// for a scan of every open job.
func (l *EtcdLocker) HeldAll() (map[string]bool, error) {
	ctx, cancel := l.ctx()
	defer cancel()
	jobKeys := l.keys + etcdJobKeys
	resp, err := l.cli.Get(ctx, jobKeys, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	held := make(map[string]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		held[strings.TrimPrefix(string(kv.Key), jobKeys)] = true
	}
	l.mu.Lock()
	for id := range l.held {
		held[id] = true
	}
	l.mu.Unlock()
	return held, nil
}

// Holder returns who holds job id's lock ("host pid N"), or "".
func (l *EtcdLocker) Holder(id string) (string, error) {
	ctx, cancel := l.ctx()
	defer cancel()
	resp, err := l.cli.Get(ctx, l.jobKey(id))
	if err != nil || len(resp.Kvs) == 0 {
		return "", err
	}
	return string(resp.Kvs[0].Value), nil
}

// Wake tells the replicas watching (Watch) that job id waits for a
// driver.
func (l *EtcdLocker) Wake(id string) error {
	ctx, cancel := l.ctx()
	defer cancel()
	_, err := l.cli.Put(ctx, l.keys+etcdWakeKey, id)
	return err
}

// Watch calls free with the ID of each job whose lock goes (its holder
// let it go, or its lease expired) and of each job woken (Wake), until
// ctx ends; with "" when it (re)starts watching, since it may have
// missed some: look at every open job then. It returns when ctx ends.
func (l *EtcdLocker) Watch(ctx context.Context, free func(id string)) {
	jobKeys := l.keys + etcdJobKeys
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		// The revision watched from is the one read here: what changed
		// before is covered by the full look that follows.
		rev := int64(0)
		if resp, err := l.cli.Get(wctx, l.keys+etcdWakeKey); err == nil {
			rev = resp.Header.Revision + 1
		}
		if rev == 0 {
			cancel()
			select {
			case <-ctx.Done():
				return
			case <-time.After(jitter(backoff)):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		wch := l.cli.Watch(wctx, l.keys, clientv3.WithPrefix(), clientv3.WithRev(rev))
		free("")
		for resp := range wch {
			if resp.Err() != nil {
				break
			}
			for _, ev := range resp.Events {
				k := string(ev.Kv.Key)
				switch {
				case ev.Type == clientv3.EventTypeDelete && strings.HasPrefix(k, jobKeys):
					free(strings.TrimPrefix(k, jobKeys))
				case ev.Type == clientv3.EventTypePut && k == l.keys+etcdWakeKey:
					free(string(ev.Kv.Value))
				}
			}
		}
		cancel()
	}
}

// Close lets the lease go (and every lock still held under it) and makes
// no more.
func (l *EtcdLocker) Close() error {
	l.mu.Lock()
	l.closed = true
	es := l.sess
	l.sess = nil
	l.mu.Unlock()
	if es == nil {
		return nil
	}
	es.once.Do(func() { close(es.lost) })
	close(es.quit)
	return es.s.Close()
}
