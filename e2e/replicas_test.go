//go:build linux

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/internal/etcdtest"
)

// replicaOf makes a second state directory for f's overlord, as on
// another machine: the same CA and identity (replicas share one; minions
// know their jobs by caller), no overlord.db of its own.
func replicaOf(t *testing.T, f *fleet, env ...string) *fleet {
	t.Helper()
	state := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ca.crt", "ca.key", "overlord.crt", "overlord.key"} {
		data, err := os.ReadFile(filepath.Join(f.stateDir, name))
		if err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".key") {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(state, name), data, mode); err != nil {
			t.Fatal(err)
		}
	}
	return newFleet(t.TempDir(), state, f.bin, append([]string{"HOME=" + t.TempDir()}, env...)...)
}

// TestReplicasKill9: two 'overlord serve' replicas on one etcd cluster
// (three members in this process), each with its own state directory,
// real minions. Async jobs go to replica A; A is killed (SIGKILL) while
// the jobs run; replica B adopts them all when A's lease expires, and
// every job settles, each command run once on each minion (marker lines).
// 'job status' answers from either replica's state directory: B's
// through its service, A's (no service now) from etcd. A job submitted by
// a CLI on a third state directory with no service (OVERLORD_STORE only)
// is taken by B at once (the CLI wakes the replicas; no driver process).
func TestReplicasKill9(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 3, etcdtest.FreePorts(t, 6))
	var eps []string
	for _, ep := range c.Endpoints {
		eps = append(eps, strings.TrimPrefix(ep, "http://"))
	}
	addr := "etcd://" + strings.Join(eps, ",") + "/replicas"
	a := startFleet(t, "web1", "web2")
	if out, err := a.overlord("store", "migrate", "--from", "bbolt:"+filepath.Join(a.stateDir, "overlord.db"), "--to", addr); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	b := replicaOf(t, a)
	pa, _ := startServeWith(t, a, "--store", addr, "--lease-ttl", "2s")
	waitService(t, a, pa)
	pb, _ := startServeWith(t, b, "--store", addr, "--lease-ttl", "2s")
	waitService(t, b, pb)

	marks, gate := filepath.Join(a.dir, "marks"), filepath.Join(a.dir, "gate")
	const n = 6
	var ids []string
	for i := range n {
		// Each job runs until the gate opens, then appends a line: a job
		// run twice shows.
		ids = append(ids, callAsync(t, a, "*", "command.run",
			fmt.Sprintf("while [ ! -e %s ]; do sleep 0.1; done; echo job%d-$(hostname) >>%s", gate, i, marks)))
	}
	// Mid-jobs: every job submitted to both minions, none can finish.
	for _, id := range ids {
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
			j, _, _ := jobStatus(t, a, id)
			if j.State == "PARTIAL" {
				break
			}
			if j.State == "FINISHED" || time.Now().After(deadline) {
				t.Fatalf("job %s is %s, want PARTIAL (submitted, running)\n%s", id, j.State, pa.logTail(20))
			}
		}
	}
	if got := strings.Count(logText(t, pb), "adopted"); got != 0 {
		t.Fatalf("replica B adopted %d jobs while A drove them:\n%s", got, pb.logTail(20))
	}
	pa.kill()
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, id := range ids {
		j := waitFinished(t, b, id, 0)
		for _, m := range []string{"web1", "web2"} {
			if e := j.Minions[m]; !e.OK {
				t.Errorf("job %s, %s: %+v", id, m, e)
			}
		}
	}
	// A's state directory, with no service now: the same jobs, from etcd.
	for _, id := range ids {
		if j, code, stderr := jobStatus(t, a, id); j.State != "FINISHED" || code != 0 {
			t.Errorf("job status %s on A's state directory: exit %d, %s\n%s", id, code, j.State, stderr)
		}
	}
	// A CLI on a third machine, no service there (only the store's
	// address): it starts no driver, and a replica takes the job at once.
	c3 := replicaOf(t, a, "OVERLORD_STORE="+addr)
	id3 := callAsync(t, c3, "*", "command.run", "echo from c3")
	if j := waitFinished(t, c3, id3, 0); j.Minions["web1"].stdout() != "from c3\n" {
		t.Errorf("the job of a CLI with no service: %+v", j.Minions["web1"])
	}
	if !strings.Contains(logText(t, pb), id3) {
		t.Errorf("replica B did not drive job %s:\n%s", id3, pb.logTail(10))
	}
	data, err := os.ReadFile(marks)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, l := range strings.Fields(string(data)) {
		seen[l]++
	}
	if len(seen) != n {
		t.Errorf("%d distinct jobs ran, want %d:\n%s", len(seen), n, data)
	}
	for l, k := range seen {
		// Both minions share this host: each job ran once on each.
		if k != 2 {
			t.Errorf("%s ran %d times, want 2 (once per minion)", l, k)
		}
	}
	// B adopted every one of A's jobs and the third CLI's (a job may be
	// adopted again after a lease renewal came late under load: what
	// must not happen, a job running twice, is checked above).
	adopted := map[string]bool{}
	for _, l := range strings.Split(logText(t, pb), "\n") {
		if strings.Contains(l, "adopted a job") {
			if i := strings.Index(l, "job="); i >= 0 {
				adopted[strings.Fields(l[i+len("job="):])[0]] = true
			}
		}
	}
	for _, id := range append(slices.Clone(ids), id3) {
		if !adopted[id] {
			t.Errorf("replica B did not adopt job %s:\n%s", id, pb.logTail(30))
		}
	}
	for _, dir := range []string{a.stateDir, b.stateDir, c3.stateDir} {
		if d := findProcs(dir, "job", "drive"); len(d) > 0 {
			t.Errorf("%d driver processes on %s: %v", len(d), dir, d)
		}
	}
}

func logText(t *testing.T, p *proc) string {
	t.Helper()
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
