package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/internal/etcdtest"
	"github.com/overlordhq/overlord/overlord"
)

// A state directory's overlord.db migrated to etcd: with OVERLORD_STORE
// the CLI works against etcd (the job listed, a new call recorded there,
// store check ok); a second migrate is refused; a damaged record makes
// store check exit 1 saying which; an unreachable etcd or a bad address
// is a clear error.
func TestStoreMigrateAndCheck(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.FreePorts(t, 2), etcdtest.EtcdDefaults())
	addr := "etcd://" + strings.TrimPrefix(c.Endpoints[0], "http://") + "/cli"
	h := newHarness(t)
	h.must("ca", "init")
	h.addMinion("web1")
	h.must("call", "web1", "test.ping")
	db := filepath.Join(h.dir, overlord.DBFile)

	out := h.must("store", "migrate", "--from", "bbolt:"+db, "--to", addr)
	if !strings.Contains(out, "copied 1 jobs") {
		t.Errorf("migrate said %q", out)
	}
	if r := h.run("store", "migrate", "--from", db, "--to", addr); r.code != 2 || !strings.Contains(r.err.Error(), "not empty") {
		t.Errorf("a second migrate: exit %d, %v; want 2 and 'not empty'", r.code, r.err)
	}

	h.env["OVERLORD_STORE"] = addr
	h.must("call", "web1", "test.ping")
	var list []struct {
		JobID string `json:"job_id"`
	}
	if err := json.Unmarshal([]byte(h.must("job", "list", "-o", "json", "--direct")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Errorf("job list on etcd: %d jobs, want 2 (the migrated one and the new one)", len(list))
	}
	if out := h.must("store", "check"); !strings.Contains(out, addr+": ok") {
		t.Errorf("store check: %q", out)
	}
	// The bbolt file did not get the new job.
	delete(h.env, "OVERLORD_STORE")
	if err := json.Unmarshal([]byte(h.must("job", "list", "-o", "json", "--direct")), &list); err != nil || len(list) != 1 {
		t.Errorf("job list on the file: %d jobs (%v), want 1", len(list), err)
	}

	cli := c.Client(t)
	key := fmt.Sprintf("/cli/2/jobs/%s/job", list[0].JobID)
	if _, err := cli.Put(context.Background(), key, "v{not json"); err != nil {
		t.Fatal(err)
	}
	r := h.run("store", "check", addr)
	if r.code != 1 || !strings.Contains(r.stdout, list[0].JobID) {
		t.Errorf("store check of a damaged store: exit %d, stdout %q; want 1 naming job %s", r.code, r.stdout, list[0].JobID)
	}

	dead := fmt.Sprintf("etcd://127.0.0.1:%d", etcdtest.FreePorts(t, 1)[0])
	h.env["OVERLORD_STORE"] = dead
	r = h.run("--lock-timeout", "300ms", "minion", "list")
	if r.code == 0 || !strings.Contains(r.err.Error(), strings.TrimPrefix(dead, "etcd://")) || !strings.Contains(r.err.Error(), "300ms") {
		t.Errorf("minion list on an unreachable etcd: exit %d, %v; want an error naming the endpoint and the wait", r.code, r.err)
	}
	h.env["OVERLORD_STORE"] = "zk://h:1"
	if r := h.run("minion", "list"); r.code != 2 || !strings.Contains(r.err.Error(), "zk://h:1") {
		t.Errorf("a bad OVERLORD_STORE: exit %d, %v", r.code, r.err)
	}
}
