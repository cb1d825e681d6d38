//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/internal/etcdtest"
)

// TestServeEtcdStore: a fleet's overlord.db migrated to etcd (an
// in-process cluster with etcd's default limits), 'overlord serve --store
// etcd://...' with real minions: a call through it and an async job it
// drives are recorded in etcd, not in the file (serve records the store in
// the state directory, so the CLI there uses it untold); 'job status' from a CLI on
// another state directory (another machine: only OVERLORD_STORE) shows
// both; 'store check' finds the store sound.
func TestServeEtcdStore(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 1, etcdtest.FreePorts(t, 2), etcdtest.EtcdDefaults())
	addr := "etcd://" + strings.TrimPrefix(c.Endpoints[0], "http://") + "/e2e"
	f := startFleet(t, "web1", "web2")
	if out, err := f.overlord("store", "migrate", "--from", "bbolt:"+filepath.Join(f.stateDir, "overlord.db"), "--to", addr); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(out, "copied 0 jobs") {
		t.Errorf("migrate: %s", out)
	}
	p, _ := startServeWith(t, f, "--store", addr)
	waitService(t, f, p)

	// A call through the service.
	out, code, stderr := callJSON(t, f, "*", "test.ping", "-v")
	if code != 0 || !strings.Contains(stderr, "via the service at") {
		t.Fatalf("call through the service: exit %d\n%s\n%s", code, out, stderr)
	}
	cmd, stdout, _ := overlordCmd(f, "call", "*", "command.run", "echo from etcd", "--async", "-o", "json")
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("call --async: exit %d", code)
	}
	var async struct {
		JobID string `json:"job_id"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &async); err != nil || async.JobID == "" {
		t.Fatalf("call --async: %v\n%s", err, stdout)
	}

	// Another machine: a state directory of its own, the store's address.
	other := newFleet(t.TempDir(), filepath.Join(t.TempDir(), "state"), f.bin, "OVERLORD_STORE="+addr, "HOME="+t.TempDir())
	var j jobView
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		cmd, stdout, stderr := overlordCmd(other, "job", "status", async.JobID, "-o", "json")
		code, err := runCode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(stdout.Bytes(), &j); err != nil {
			t.Fatalf("job status from another state directory: exit %d, %v\n%s%s", code, err, stdout, stderr)
		}
		if j.State == "FINISHED" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the async job is still %s after 2 minutes:\n%s", j.State, p.logTail(20))
		}
	}
	for _, m := range []string{"web1", "web2"} {
		if e := j.Minions[m]; !e.OK || e.stdout() != "from etcd\n" {
			t.Errorf("async job, %s: %+v", m, e)
		}
	}
	cmd, stdout, stderr2 := overlordCmd(other, "job", "list", "-o", "json")
	var list []jobView
	if code := exitCode(t, cmd); code != 0 || json.Unmarshal(stdout.Bytes(), &list) != nil || len(list) != 2 {
		t.Errorf("job list from another state directory: exit %d, %d jobs, want 2\n%s%s", code, len(list), stdout, stderr2)
	}

	// In etcd, under the prefix; not in the file.
	resp, err := c.Client(t).Get(context.Background(), "/e2e/1/jobs/"+async.JobID)
	if err != nil || len(resp.Kvs) != 1 {
		t.Errorf("the job's key in etcd: %v, %v", resp, err)
	}
	cmd, _, _ = overlordCmd(f, "--store", "bbolt:"+filepath.Join(f.stateDir, "overlord.db"), "job", "status", async.JobID, "--direct", "-o", "json")
	if code := exitCode(t, cmd); code == 0 {
		t.Error("the async job is in the state directory's overlord.db too")
	}
	if out, err := other.overlord("store", "check"); err != nil || !strings.Contains(out, ": ok") {
		t.Errorf("store check: %v\n%s", err, out)
	}
	if d := findProcs(f.stateDir, "job", "drive"); len(d) > 0 {
		t.Errorf("%d driver processes with the service up: %v", len(d), d)
	}
}
