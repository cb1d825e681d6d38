package job_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/overlordhq/overlord/internal/etcdtest"
	"github.com/overlordhq/overlord/job"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/jobs/jobstest"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// startEtcd starts an in-process cluster of three members.
func startEtcd(t *testing.T) *etcdtest.Cluster {
	t.Helper()
	return etcdtest.Start(t, 3, etcdtest.FreePorts(t, 6))
}

func locker(t *testing.T, cli *clientv3.Client, ttl time.Duration) *job.EtcdLocker {
	t.Helper()
	l := job.NewEtcdLocker(cli, "/test/", job.EtcdOptions{TTL: ttl, Timeout: 5 * time.Second})
	t.Cleanup(func() { l.Close() })
	return l
}

func lost(l job.Lock) bool {
	select {
	case <-l.Lost():
		return true
	default:
		return false
	}
}

// waitFor polls cond every 20 ms until it holds, failing the test after
// d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
	}
}

// TestEtcdLock: of two processes (two sessions), one holds a job's lock
// and the other is refused it, as is a second try in the same process;
// Held tells; once the holder lets go, the other gets it; when a holder's
// session ends without letting go (its lease revoked, as at its expiry),
// the lock goes with it.
func TestEtcdLock(t *testing.T) {
	c := startEtcd(t)
	a, b := locker(t, c.Client(t), 2*time.Second), locker(t, c.Client(t), 2*time.Second)
	if b.Held("j1") {
		t.Error("Held before any lock")
	}
	la, ok, err := a.TryLock("j1")
	if err != nil || !ok {
		t.Fatalf("a.TryLock = %v, %v", ok, err)
	}
	if _, ok, err := b.TryLock("j1"); err != nil || ok {
		t.Errorf("b.TryLock while a holds it = %v, %v; want false, nil", ok, err)
	}
	if _, ok, err := a.TryLock("j1"); err != nil || ok {
		t.Errorf("a.TryLock again in the same process = %v, %v; want false, nil", ok, err)
	}
	if !b.Held("j1") || !a.Held("j1") {
		t.Error("not Held while a holds it")
	}
	if all, err := b.HeldAll(); err != nil || !all["j1"] || len(all) != 1 {
		t.Errorf("HeldAll = %v, %v; want j1", all, err)
	}
	if who, err := b.Holder("j1"); err != nil || who == "" {
		t.Errorf("Holder = %q, %v", who, err)
	}
	lb2, ok, err := b.TryLock("j2")
	if err != nil || !ok {
		t.Fatalf("b.TryLock(j2) = %v, %v", ok, err)
	}
	if err := la.Close(); err != nil {
		t.Fatal(err)
	}
	if a.Held("j1") {
		t.Error("Held after the holder let go")
	}
	lb, ok, err := b.TryLock("j1")
	if err != nil || !ok {
		t.Fatalf("b.TryLock after a let go = %v, %v", ok, err)
	}
	if lost(lb) {
		t.Error("lock lost as soon as taken")
	}
	// b's process ends: its lease goes, and both its locks with it.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if !lost(lb) || !lost(lb2) {
		t.Error("b's locks not lost with its session")
	}
	waitFor(t, 10*time.Second, "j1 and j2 still held after b's session ended", func() bool { return !a.Held("j1") && !a.Held("j2") })
	if _, ok, err := a.TryLock("j1"); err != nil || !ok {
		t.Errorf("a.TryLock after b's session ended = %v, %v", ok, err)
	}
	if _, _, err := a.TryLock("a/b"); err == nil {
		t.Error("TryLock of a job ID with a slash: no error")
	}
}

// TestEtcdLockExpires: a holder cut off from etcd loses its lock (Lost)
// before the lease could expire in etcd, so before anyone else gets it;
// the other process gets it once etcd expired the lease.
func TestEtcdLockExpires(t *testing.T) {
	c := startEtcd(t)
	p := c.Proxy(t)
	a, b := locker(t, p.Client(t), 4*time.Second), locker(t, c.Client(t), 4*time.Second)
	la, ok, err := a.TryLock("j1")
	if err != nil || !ok {
		t.Fatalf("a.TryLock = %v, %v", ok, err)
	}
	p.Cut()
	var lb job.Lock
	waitFor(t, 30*time.Second, "b never got the lock of a's cut-off process", func() bool {
		l, ok, err := b.TryLock("j1")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			lb = l
			if !lost(la) {
				t.Fatal("b got the lock while a still held it")
			}
		}
		return ok
	})
	defer lb.Close()
	// a, back, takes a new lease, and is refused the lock b holds.
	p.Mend()
	waitFor(t, 30*time.Second, "a could not ask etcd again", func() bool {
		_, ok, err := a.TryLock("j1")
		if ok {
			t.Fatal("a got the lock b holds")
		}
		return err == nil
	})
	if _, ok, err := a.TryLock("j2"); err != nil || !ok {
		t.Errorf("a.TryLock(j2) on its new lease = %v, %v", ok, err)
	}
}

// TestEtcdLockLeaderStop: the etcd leader stops; the holder keeps its lock
// through the election, well past the lease's TTL, and nobody else gets it.
func TestEtcdLockLeaderStop(t *testing.T) {
	c := startEtcd(t)
	const ttl = 5 * time.Second
	a, b := locker(t, c.Client(t), ttl), locker(t, c.Client(t), ttl)
	la, ok, err := a.TryLock("j1")
	if err != nil || !ok {
		t.Fatalf("a.TryLock = %v, %v", ok, err)
	}
	leader := c.Leader()
	if leader < 0 {
		t.Fatal("no leader")
	}
	stopped := time.Now()
	c.StopMember(leader)
	waitFor(t, 30*time.Second, "no new leader", func() bool { return c.Leader() >= 0 })
	// Watch the lock for two TTLs after the stop: a renewal must have
	// gone through the new leader for it to live that long.
	for time.Since(stopped) < 2*ttl {
		if lost(la) {
			t.Fatalf("a lost its lock %s after the leader stopped", time.Since(stopped).Round(time.Millisecond))
		}
		if _, ok, _ := b.TryLock("j1"); ok {
			t.Fatal("b got the lock a holds")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := la.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := b.TryLock("j1"); err != nil || !ok {
		t.Errorf("b.TryLock after a let go = %v, %v", ok, err)
	}
}

// fakeMinions answers Minion.Submit and Minion.Status for the minions of
// a test job, as real ones do: one job per origin whatever the number of
// submits, RUNNING until finish is closed. Each driver calls through its
// own caller, which counts its calls.
type fakeMinions struct {
	mu      sync.Mutex
	created map[string]int // minion: jobs created
	finish  chan struct{}
}

type fakeCaller struct {
	m     *fakeMinions
	mu    sync.Mutex
	calls int
}

func (f *fakeCaller) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeCaller) Call(ctx context.Context, minion, method string, params, reply any) error {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	switch method {
	case "Minion.Submit":
		p := params.(rpc.SubmitParams)
		f.m.mu.Lock()
		created := f.m.created[minion] == 0
		if created {
			f.m.created[minion]++
		}
		f.m.mu.Unlock()
		*reply.(*rpc.SubmitReply) = rpc.SubmitReply{JobID: "m-" + p.OriginJobID, Created: created}
		return nil
	case "Minion.Status":
		p := params.(rpc.StatusParams)
		t := time.NewTimer(time.Duration(p.WaitMS) * time.Millisecond)
		defer t.Stop()
		js := rpc.JobStatus{JobID: p.JobIDs[0], State: status.Running}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.m.finish:
			js.State, js.OK, js.Result = status.Finished, true, []byte(`"done"`)
		case <-t.C:
		}
		*reply.(*rpc.StatusReply) = rpc.StatusReply{Jobs: []rpc.JobStatus{js}}
		return nil
	}
	return fmt.Errorf("fake minion: no method %s", method)
}

// TestDriverCutOff: two processes' drivers on one store, with their locks
// in etcd. The one driving the job is cut off from etcd: its driver stops
// (Drive returns ErrLockLost) before the other takes the lock, and calls
// no minion after; the other adopts the job and carries it to FINISHED.
// Each minion got the job once.
func TestDriverCutOff(t *testing.T) {
	c := startEtcd(t)
	p := c.Proxy(t)
	store := jobstest.New(t)
	dir := filepath.Dir(store.Path())
	ka, kb := job.New(store, dir), job.New(store, dir)
	ka.Locks = locker(t, p.Client(t), 4*time.Second)
	kb.Locks = locker(t, c.Client(t), 4*time.Second)
	deadline := time.Now().Add(time.Hour).UTC()
	rec := &jobs.Record{ID: "j1", Module: "test", Method: "sleep", Async: true, Forks: 4, Deadline: &deadline, Caller: "ovl"}
	names := []string{"web1", "web2", "web3"}
	if err := ka.Create(rec, names); err != nil {
		t.Fatal(err)
	}
	m := &fakeMinions{created: map[string]int{}, finish: make(chan struct{})}
	ca, cb := &fakeCaller{m: m}, &fakeCaller{m: m}
	driver := func(k *job.Keeper, c *fakeCaller) *job.Driver {
		return &job.Driver{Keeper: k, Connect: func(jobs.Record, []jobs.Minion) (job.Link, error) {
			return job.Link{Client: c}, nil
		}}
	}
	doneA := make(chan error, 1)
	go func() { doneA <- driver(ka, ca).Drive(context.Background(), "j1", nil) }()
	waitFor(t, 30*time.Second, "a's driver never submitted", func() bool {
		hdr, err := store.Header("j1")
		return err == nil && hdr.State == status.Partial
	})
	p.Cut()
	var returned bool
	var callsAtReturn int
	var lb job.Lock
	waitFor(t, 30*time.Second, "b never got the lock of a's cut-off driver", func() bool {
		select {
		case err := <-doneA:
			if !errors.Is(err, job.ErrLockLost) {
				t.Fatalf("a's Drive = %v, want ErrLockLost", err)
			}
			returned, callsAtReturn = true, ca.count()
		default:
		}
		l, ok, err := kb.Lock("j1")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			lb = l
			if !returned {
				t.Fatal("b got the job's lock while a's driver still ran")
			}
		}
		return ok
	})
	doneB := make(chan error, 1)
	go func() { doneB <- driver(kb, cb).Drive(context.Background(), "j1", lb) }()
	waitFor(t, 30*time.Second, "b's driver never called the minions", func() bool { return cb.count() >= len(names) })
	close(m.finish)
	select {
	case err := <-doneB:
		if err != nil {
			t.Fatalf("b's Drive = %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("b's driver did not finish the job")
	}
	hdr, entries, err := store.Job("j1")
	if err != nil {
		t.Fatal(err)
	}
	if hdr.State != status.Finished || hdr.Summary.OK != len(names) {
		t.Errorf("job %s, summary %+v; want FINISHED, %d ok", hdr.State, hdr.Summary, len(names))
	}
	for _, n := range names {
		if e := entries[n]; !e.OK || e.MinionJobID != "m-j1" {
			t.Errorf("%s: %+v", n, e)
		}
		if m.created[n] != 1 {
			t.Errorf("%s got the job %d times", n, m.created[n])
		}
	}
	if n := ca.count(); n != callsAtReturn {
		t.Errorf("a's driver called minions %d times after it returned", n-callsAtReturn)
	}
}

// TestEtcdLockLeaseGoneBehindItsBack: the lease expires in etcd before
// the locker sees it go (a stall longer than its TTL; here, revoked by
// hand): the next TryLock gives it up and takes the lock under a new
// lease, instead of failing with "lease not found".
func TestEtcdLockLeaseGoneBehindItsBack(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 1, etcdtest.FreePorts(t, 2))
	cli := c.Client(t)
	l := locker(t, cli, time.Minute)
	first, ok, err := l.TryLock("j1")
	if err != nil || !ok {
		t.Fatalf("TryLock(j1) = %v, %v", ok, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leases, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ls := range leases.Leases {
		if _, err := cli.Revoke(ctx, ls.ID); err != nil {
			t.Fatal(err)
		}
	}
	lk, ok, err := l.TryLock("j2")
	if err != nil || !ok {
		t.Fatalf("TryLock(j2) after the lease went = %v, %v; want the lock under a new lease", ok, err)
	}
	defer lk.Close()
	if !lost(first) {
		t.Error("j1's lock, under the lease that went, is not lost")
	}
	if lost(lk) {
		t.Error("j2's lock is lost already")
	}
}
