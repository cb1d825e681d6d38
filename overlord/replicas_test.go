package overlord_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/internal/etcdtest"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/jobs/jobstest"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

// etcdAddr is the store address of endpoints (http://HOST:PORT), under
// the prefix /rt.
func etcdAddr(endpoints []string) string {
	var hosts []string
	for _, ep := range endpoints {
		hosts = append(hosts, strings.TrimPrefix(ep, "http://"))
	}
	return "etcd://" + strings.Join(hosts, ",") + "/rt"
}

// replica returns an overlord on state directory dir whose store is at
// addr, its jobs' locks under a lease of 2 s.
func replica(t *testing.T, dir, addr string) *overlord.Overlord {
	t.Helper()
	store, err := jobs.Open(addr, "", jobs.Options{LockTimeout: jobstest.EtcdTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	o := overlord.NewWithStore(dir, "", store, nil)
	o.SetLeaseTTL(4 * time.Second)      // 500 ms of margin (leaseCheckMargin): the cut-off tests hold on a loaded machine
	o.DriverCommand = []string{"false"} // never a driver process
	return o
}

// twoReplicas makes replica A (its store reached through addrA) with a CA
// and a store, and replica B on another state directory with A's CA and
// identity (replicas share one), its store at addrB.
func twoReplicas(t *testing.T, addrA, addrB string) (a, b *overlord.Overlord) {
	t.Helper()
	a = replica(t, filepath.Join(t.TempDir(), "a"), addrA)
	if _, err := a.InitCA("op", certs.ECDSA); err != nil {
		t.Fatal(err)
	}
	dirB := filepath.Join(t.TempDir(), "b")
	if err := os.Mkdir(dirB, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{certs.CACertFile, certs.CAKeyFile, overlord.CertFile, overlord.KeyFile} {
		data, err := os.ReadFile(filepath.Join(a.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dirB, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return a, replica(t, dirB, addrB)
}

// gatedJob submits through o an async command to web1 that appends a line
// to marks once gate exists, and waits until it runs.
func gatedJob(t *testing.T, o *overlord.Overlord) (id, gate, marks string) {
	t.Helper()
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	gate, marks = filepath.Join(dir, "gate"), filepath.Join(dir, "marks")
	t.Cleanup(func() { os.WriteFile(gate, nil, 0o600) })
	rec := submitAsync(t, o, fmt.Sprintf("touch %s; while [ ! -e %s ]; do sleep 0.05; done; echo ran >>%s", started, gate, marks), time.Minute)
	waitFileIn(t, started)
	return rec.ID, gate, marks
}

// ranOnce checks that the gated job ran to its end once.
func ranOnce(t *testing.T, o *overlord.Overlord, id, marks string) {
	t.Helper()
	hdr := waitFinished(t, o, id)
	_, entries, err := o.Store.Job(id)
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Summary.OK != 1 || !entries["web1"].OK {
		t.Errorf("job %s: %+v, web1 %+v", id, hdr.Summary, entries["web1"])
	}
	if data, err := os.ReadFile(marks); err != nil || string(data) != "ran\n" {
		t.Errorf("the command's marks: %q, %v; want it run once", data, err)
	}
}

// Two replicas on one etcd; A drives a job, then is cut off from etcd
// (its store and its locks): A stops driving before B adopts the job,
// never both at once; B carries it to its end, run once.
func TestReplicasCutOff(t *testing.T) {
	c := etcdtest.Start(t, 3, etcdtest.FreePorts(t, 6))
	p := c.Proxy(t)
	a, b := twoReplicas(t, etcdAddr(p.Endpoints), etcdAddr(c.Endpoints))
	web1 := addFlakyMinion(t, a, "web1")
	web1.start()
	// The default scan interval: B adopts by its watch, and A, cut off,
	// seldom reads the store (a read cut off mid-transaction can crash
	// the etcd store's caller: see the report of this branch).
	sa, sb := openServiceEvery(t, a, overlord.DefaultScanInterval), openServiceEvery(t, b, overlord.DefaultScanInterval)
	t.Cleanup(p.Mend) // A's service closes with etcd back (cleanups run last first)
	id, gate, marks := gatedJob(t, a)
	if overlord.Driving(sa) != 1 || overlord.Driving(sb) != 0 {
		t.Fatalf("A drives %d jobs, B %d; want 1, 0", overlord.Driving(sa), overlord.Driving(sb))
	}
	p.Cut()
	stopped := false
	for deadline := time.Now().Add(time.Minute); overlord.Driving(sb) == 0; time.Sleep(5 * time.Millisecond) {
		if overlord.Driving(sa) == 0 {
			stopped = true
		}
		if time.Now().After(deadline) {
			t.Fatalf("B did not adopt the job of A, cut off (A drives %d)", overlord.Driving(sa))
		}
	}
	if !stopped || overlord.Driving(sa) != 0 {
		t.Fatalf("B adopted the job while A, cut off, still drove it")
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ranOnce(t, b, id, marks)
}

// The etcd leader stops while a replica drives a job: the replica keeps
// the job (its lease lives on through the election) and carries it to its
// end.
func TestReplicasLeaderStop(t *testing.T) {
	c := etcdtest.Start(t, 3, etcdtest.FreePorts(t, 6))
	a, b := twoReplicas(t, etcdAddr(c.Endpoints), etcdAddr(c.Endpoints))
	web1 := addFlakyMinion(t, a, "web1")
	web1.start()
	sa, sb := openService(t, a), openService(t, b)
	id, gate, marks := gatedJob(t, a)
	leader := c.Leader()
	if leader < 0 {
		t.Fatal("no leader")
	}
	stopped := time.Now()
	c.StopMember(leader)
	for c.Leader() < 0 || time.Since(stopped) < 3*2*time.Second {
		// Through the election and past three lease TTLs: a renewal went
		// through the new leader.
		if overlord.Driving(sa) != 1 || overlord.Driving(sb) != 0 {
			t.Fatalf("%s after the leader stopped: A drives %d jobs, B %d; want 1, 0",
				time.Since(stopped).Round(time.Millisecond), overlord.Driving(sa), overlord.Driving(sb))
		}
		if time.Since(stopped) > time.Minute {
			t.Fatal("no new leader after a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ranOnce(t, a, id, marks)
	if hdr, err := a.Store.Header(id); err != nil || hdr.State != status.Finished {
		t.Errorf("job %s: %+v, %v", id, hdr, err)
	}
}

// openServiceEvery runs the service on o's state directory, scanning for
// open jobs every scan, until the test ends.
func openServiceEvery(t *testing.T, o *overlord.Overlord, scan time.Duration) *overlord.Service {
	t.Helper()
	svc, err := o.OpenService(context.Background(), overlord.ServiceConfig{ScanInterval: scan})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := svc.Close(ctx); err != nil {
			t.Errorf("closing the service: %v", err)
		}
	})
	return svc
}
