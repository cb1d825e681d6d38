package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/status"

	"github.com/overlordhq/overlord/internal/etcdtest"
	"github.com/overlordhq/overlord/jobs/jobstest"
)

// TestOnEtcd runs the store's tests on an etcd store (an in-process
// cluster of one member, each test under a prefix of its own), all but
// those about the bbolt file itself (its lock, its bytes).
func TestOnEtcd(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.FreePorts(t, 2))
	// Until every subtest is done (they run in parallel, each on a store
	// under a prefix of its own): no other test runs meanwhile.
	t.Cleanup(jobstest.UseEtcd(c.Endpoints))
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"Census", TestCensus},
		{"DescribesMethod", TestDescribesMethod},
		{"TokenStore", TestTokenStore},
		{"EnrolTx", TestEnrolTx},
		{"Revoke", TestRevoke},
		{"InventoryVersions", TestInventoryVersions},
		{"InventoryRefusesAndChangesNothing", TestInventoryRefusesAndChangesNothing},
		{"InventoryKeepRemembered", TestInventoryKeepRemembered},
		{"CreateJob", TestCreateJob},
		{"CreateJobNoMinions", TestCreateJobNoMinions},
		{"WriteKeepsSummary", TestWriteKeepsSummary},
		{"WriteMutate", TestWriteMutate},
		{"WriteIsAtomic", TestWriteIsAtomic},
		{"WriteTouchesMinions", TestWriteTouchesMinions},
		{"CreateJobDuplicateMinions", TestCreateJobDuplicateMinions},
		{"ListJobs", TestListJobs},
		{"JobByPrefix", TestJobByPrefix},
		{"LargeJob", TestLargeJob},
		{"CreateJobBatched", TestCreateJobBatched},
		{"Minions", TestMinions},
		{"RemoveMinionDropsFromGroups", TestRemoveMinionDropsFromGroups},
		{"Groups", TestGroups},
		{"TouchMinions", TestTouchMinions},
		{"ConcurrentWriters", TestConcurrentWriters},
		{"CacheFacts", TestCacheFacts},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t)
		})
	}
}

// Writers of one job at once, each reading the header and writing it
// back: the optimistic transactions serialise them, so no update is lost.
func TestEtcdConcurrentUpdates(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 1, etcdtest.FreePorts(t, 2))
	s := jobstest.NewEtcd(t, etcdAddr(c))
	other := jobstest.NewEtcd(t, etcdAddr(c)) // another prefix: untouched
	rec := newJob(t, s, "web1", "web2")
	const writers, each = 6, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := map[string]status.Result{}
				if i == each-1 {
					r[fmt.Sprintf("web%d", w%2+1)] = okResult
				}
				_, err := s.Write(rec.ID, r, func(r *jobs.Record) error { r.Forks++; return nil })
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	got, entries, err := s.Job(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Forks != writers*each {
		t.Errorf("Forks = %d after %d increments: updates were lost", got.Forks, writers*each)
	}
	if got.Summary.OK != 2 || entries["web1"].State != status.Finished {
		t.Errorf("summary %+v, entries %v", got.Summary, entries)
	}
	if list, err := other.ListJobs(jobs.ListOptions{}); err != nil || len(list) != 0 {
		t.Errorf("the store under another prefix lists %d jobs (%v), want 0", len(list), err)
	}
}

func etcdAddr(c *etcdtest.Cluster) string {
	var hosts []string
	for _, e := range c.Endpoints {
		hosts = append(hosts, strings.TrimPrefix(e, "http://"))
	}
	return "etcd://" + strings.Join(hosts, ",")
}

// With etcd's default limits (128 operations a transaction), a job of 100
// minions is recorded; one of 200 is refused with an error that says
// which server flag to raise, and nothing of it is written.
func TestEtcdDefaultLimits(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 1, etcdtest.FreePorts(t, 2), etcdtest.EtcdDefaults())
	s := jobstest.NewEtcd(t, etcdAddr(c))
	names := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("m%04d", i)
		}
		return out
	}
	small := newJob(t, s, names(100)...)
	res := map[string]status.Result{}
	for _, n := range names(100) {
		res[n] = okResult
	}
	if _, err := s.Write(small.ID, res, nil); err != nil {
		t.Fatalf("Write of 100 results: %v", err)
	}
	big := &jobs.Record{Target: "*", Module: "test", Method: "ping"}
	err := s.CreateJob(big, names(200))
	if err == nil || !strings.Contains(err.Error(), "--max-txn-ops") {
		t.Fatalf("CreateJob of 200 minions with --max-txn-ops 128: %v; want an error naming --max-txn-ops", err)
	}
	if _, err := s.Header(big.ID); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("the refused job: %v, want ErrNotFound", err)
	}
	if list, _ := s.ListJobs(jobs.ListOptions{}); len(list) != 1 {
		t.Errorf("%d jobs listed, want 1", len(list))
	}

	// Retention deletes more jobs than one transaction can: in several.
	s = jobstest.NewEtcd(t, etcdAddr(c))
	old := time.Now().Add(-48 * time.Hour)
	for range 70 {
		rec := &jobs.Record{Target: "*", Module: "test", Method: "ping", CreatedAt: old}
		if err := s.CreateJob(rec, []string{"m0000"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(rec.ID, map[string]status.Result{"m0000": okResult}, finish); err != nil {
			t.Fatal(err)
		}
	}
	purged, err := s.CreateJobPurging(&jobs.Record{Target: "*", Module: "test", Method: "ping"}, []string{"m0000"},
		jobs.AutoPurge{MaxAge: time.Hour, Every: time.Hour, Max: 65})
	if err != nil || len(purged) != 65 {
		t.Errorf("CreateJobPurging: %d purged, %v; want 65", len(purged), err)
	}
	gone, err := s.Purge(time.Now().Add(-time.Hour), 0)
	if err != nil || len(gone) != 5 {
		t.Errorf("Purge: %d purged, %v; want the 5 left", len(gone), err)
	}
	if list, _ := s.ListJobs(jobs.ListOptions{}); len(list) != 1 {
		t.Errorf("%d jobs listed after the purges, want 1", len(list))
	}
}

// An etcd store that cannot be used says why: no cluster at the address
// (which endpoints, how long it waited), a prefix that holds no store,
// another schema version, a prefix holding another program's keys.
func TestEtcdErrors(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 1, etcdtest.FreePorts(t, 2))
	t.Run("unreachable", func(t *testing.T) {
		port := etcdtest.FreePorts(t, 1)[0]
		addr := fmt.Sprintf("etcd://127.0.0.1:%d", port)
		s, err := jobs.Open(addr, "", jobs.Options{LockTimeout: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = s.Minions()
		if !errors.Is(err, jobs.ErrLocked) || !strings.Contains(err.Error(), fmt.Sprint(port)) || !strings.Contains(err.Error(), "300ms") {
			t.Errorf("error %v; want one naming the endpoint and the wait", err)
		}
	})
	t.Run("wrong prefix", func(t *testing.T) {
		jobstest.NewEtcd(t, etcdAddr(c))
		s, err := jobs.Open(etcdAddr(c)+"/nothing-here", "", jobs.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = s.Minions()
		if !errors.Is(err, jobs.ErrNoStore) || !strings.Contains(err.Error(), "/nothing-here/") {
			t.Errorf("error %v; want ErrNoStore naming the prefix", err)
		}
	})
	t.Run("schema", func(t *testing.T) {
		s := jobstest.NewEtcd(t, etcdAddr(c))
		cli, prefix := s.Etcd()
		if _, err := cli.Put(context.Background(), prefix+"1/meta/schema_version", "v2"); err != nil {
			t.Fatal(err)
		}
		_, err := s.Minions()
		if err == nil || !strings.Contains(err.Error(), "schema version 2") {
			t.Errorf("error %v; want one about schema version 2", err)
		}
		if err := s.AddMinion(jobs.Minion{Name: "web1"}); err == nil {
			t.Error("AddMinion on a store of schema version 2 succeeded")
		}
		cli.Put(context.Background(), prefix+"1/meta/schema_version", "v1")
	})
	t.Run("foreign keys", func(t *testing.T) {
		cli := c.Client(t)
		if _, err := cli.Put(context.Background(), "/theirs/config", "x"); err != nil {
			t.Fatal(err)
		}
		s, err := jobs.Open(etcdAddr(c)+"/theirs", "", jobs.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Init(); err == nil || !strings.Contains(err.Error(), "not an overlord store") {
			t.Errorf("Init under a prefix with another program's keys: %v", err)
		}
		if resp, _ := cli.Get(context.Background(), "/theirs/", clientv3.WithPrefix(), clientv3.WithCountOnly()); resp.Count != 1 {
			t.Errorf("Init wrote under another program's prefix: %d keys", resp.Count)
		}
	})
}

func TestOpenAddress(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"", "/default/overlord.db"},
		{"/x/overlord.db", "/x/overlord.db"},
		{"bbolt:/y/o.db", "/y/o.db"},
		{"etcd://h1:2379,h2:2379", "etcd://h1:2379,h2:2379"},
	} {
		s, err := jobs.Open(tc.addr, "/default/overlord.db", jobs.Options{})
		if err != nil {
			t.Errorf("%q: %v", tc.addr, err)
			continue
		}
		if s.Address() != tc.want {
			t.Errorf("%q: address %q, want %q", tc.addr, s.Address(), tc.want)
		}
		s.Close()
	}
	for _, bad := range []string{"bbolt:", "etcd://", "etcd://h1", "etcd:h1:2379", "zk://h:1", "etcd://:2379"} {
		if _, err := jobs.Open(bad, "/d", jobs.Options{}); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := jobs.Open("", "/d", jobs.Options{EtcdCA: "/ca.pem"}); err == nil {
		t.Error("--etcd-ca with a bbolt store: no error")
	}
	_, prefix, _ := jobs.ParseEtcd("etcd://h:1/team/a/")
	if prefix != "/team/a/" {
		t.Errorf("prefix %q", prefix)
	}
}

// BenchmarkEtcdRecordJob is BenchmarkRecordJob's create+write on an etcd
// store (one in-process member, on this machine's disk): a job of 1,000
// minions, created and then written in one transaction each.
func BenchmarkEtcdRecordJob(b *testing.B) {
	c := etcdtest.Start(b, 1, etcdtest.FreePorts(b, 2))
	s := jobstest.NewEtcd(b, etcdAddr(c))
	names := benchMinionNames(1000)
	for _, n := range names {
		if err := s.AddMinion(jobs.Minion{Name: n}); err != nil {
			b.Fatal(err)
		}
	}
	results := pingResults(names)
	b.ReportAllocs()
	for b.Loop() {
		rec := pingRecord()
		if err := s.CreateJob(rec, names); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Write(rec.ID, results, finish); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed())/float64(time.Microsecond)/float64(b.N)/1000, "us/minion")
}

// BenchmarkEtcdListJobs lists the newest 50 of 2,000 jobs on etcd.
func BenchmarkEtcdListJobs(b *testing.B) {
	c := etcdtest.Start(b, 1, etcdtest.FreePorts(b, 2))
	s := jobstest.NewEtcd(b, etcdAddr(c))
	for range 2000 {
		if err := s.CreateJob(pingRecord(), []string{"web1", "web2", "web3"}); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if l, err := s.ListJobs(jobs.ListOptions{Limit: 50}); err != nil || len(l) != 50 {
			b.Fatal(len(l), err)
		}
	}
}

// A store on a cluster of three members carries on when the leader
// stops: writes and reads after the election succeed, nothing is lost.
func TestEtcdLeaderStop(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 3, etcdtest.FreePorts(t, 6))
	s := jobstest.NewEtcd(t, etcdAddr(c))
	addMinions(t, s, "web1", "web2")
	rec := newJob(t, s, "web1", "web2")
	l := c.Leader()
	if l < 0 {
		t.Fatal("no leader")
	}
	c.StopMember(l)
	if _, err := s.Write(rec.ID, map[string]status.Result{"web1": okResult}, nil); err != nil {
		t.Fatalf("Write after the leader stopped: %v", err)
	}
	if err := s.AddMinion(jobs.Minion{Name: "web3"}); err != nil {
		t.Fatalf("AddMinion after the leader stopped: %v", err)
	}
	got, _, err := s.Job(rec.ID)
	if err != nil || got.Summary.OK != 1 {
		t.Errorf("job after the election: %+v, %v", got.Summary, err)
	}
	if names := minionNames(t, s); len(names) != 3 {
		t.Errorf("minions: %v", names)
	}
}
