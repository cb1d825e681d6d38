package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDamagedMinionDB damages a real minion's minion.db while it is
// stopped (the page bbolt's newest meta page names as the root, or the
// file cut to 0 bytes) and starts it again: it starts and stays up, logs
// the damage, moves the file aside, and serves from the spool: the jobs
// it ran are listed, a resubmit of the same overlord job gets the same
// minion job, and synchronous calls work.
func TestDamagedMinionDB(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"root-page", overwriteRootPage},
		{"truncated", func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := startFleet(t, "web1")
			m := mustMinion(t, f, "web1")
			jobs := map[string]string{} // overlord job ID -> minion job ID
			for range 3 {
				id := callAsync(t, f, "web1", "test.ping")
				jobs[id] = waitFinished(t, f, id, 0).Minions["web1"].MinionJobID
			}
			if err := f.stop(m); err != nil {
				t.Fatal(err)
			}
			db := filepath.Join(m.dir, "minion.db")
			tc.damage(t, db)
			from := logSize(m.p)
			if err := f.start(m); err != nil {
				t.Fatal(err)
			}
			if err := f.ready(m); err != nil {
				t.Fatal(err)
			}
			waitLog(t, m.p, from, `level=ERROR msg="minion.db is damaged`)
			waitLog(t, m.p, from, `msg="minion.db rebuilt from the spool"`)
			if aside, _ := filepath.Glob(db + ".damaged-*"); len(aside) != 1 {
				t.Errorf("files moved aside: %v, want one", aside)
			}

			call := minionRPC(t, f, m)
			var list struct {
				Jobs []struct {
					JobID string `json:"job_id"`
					State string `json:"state"`
					OK    bool   `json:"ok"`
				} `json:"jobs"`
			}
			call("Minion.List", map[string]any{}, &list)
			listed := map[string]bool{}
			for _, j := range list.Jobs {
				listed[j.JobID] = j.State == "FINISHED" && j.OK
			}
			for origin, id := range jobs {
				if !listed[id] {
					t.Errorf("Minion.List %+v: no FINISHED ok job %s", list.Jobs, id)
				}
				var sub struct {
					JobID   string `json:"job_id"`
					Created bool   `json:"created"`
				}
				call("Minion.Submit", map[string]any{"origin_job_id": origin, "module": "test", "method": "ping"}, &sub)
				if sub.JobID != id || sub.Created {
					t.Errorf("resubmit of overlord job %s: %+v, want job %s, not created", origin, sub, id)
				}
			}
			out, err := f.overlord("call", "web1", "test.ping")
			if err != nil || !strings.Contains(out, "web1") {
				t.Errorf("a synchronous call after the rebuild: %v\n%s", err, out)
			}
			// A new async job runs and is recorded in the new store.
			id := callAsync(t, f, "web1", "test.ping")
			waitFinished(t, f, id, 0)
			if m.p.exited() {
				t.Fatalf("the minion exited: %s\n%s", m.p.state(), m.p.logTail(20))
			}
		})
	}
}

// overwriteRootPage writes garbage over the page that the newer of
// minion.db's two meta pages names as the root of its buckets.
func overwriteRootPage(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const pageSize = 4096
	// A meta page: a 16-byte page header, then magic, version,
	// page size, flags (4 bytes each), the root bucket (root page,
	// sequence), the freelist page, the high water mark and the txid.
	root := func(p int) (uint64, uint64) {
		m := data[p*pageSize+16:]
		return binary.LittleEndian.Uint64(m[16:]), binary.LittleEndian.Uint64(m[48:])
	}
	r0, tx0 := root(0)
	r1, tx1 := root(1)
	r := r0
	if tx1 > tx0 {
		r = r1
	}
	if r < 2 || int(r+1)*pageSize > len(data) {
		t.Fatalf("root page %d of a %d-byte minion.db", r, len(data))
	}
	copy(data[r*pageSize:], bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, pageSize/4))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// minionRPC returns a function that calls a JSON-RPC method of m as the
// fleet's overlord and decodes the result into out, failing the test on
// any error.
func minionRPC(t *testing.T, f *fleet, m *minionProc) func(method string, params, out any) {
	pool := caPool(t, f.stateDir)
	id := loadPair(t, filepath.Join(f.stateDir, "overlord.crt"), filepath.Join(f.stateDir, "overlord.key"))
	tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: m.name, Certificates: []tls.Certificate{id}}}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	return func(method string, params, out any) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+m.addr+"/rpc", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var reply struct {
			Result json.RawMessage `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(data, &reply); err != nil || len(reply.Error) > 0 && string(reply.Error) != "null" {
			t.Fatalf("%s: HTTP %s %s (%v)", method, resp.Status, data, err)
		}
		if err := json.Unmarshal(reply.Result, out); err != nil {
			t.Fatalf("%s: %s: %v", method, reply.Result, err)
		}
	}
}

// TestMinionDiskFull puts a real minion's spool on a 1 MiB tmpfs and
// runs an async job that writes 4 MB: the entry ends kind internal
// saying the disk is full (not lost), and 'minion job list' and 'minion
// job show', which read the spool, say the same.
func TestMinionDiskFull(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1")
	m := mustMinion(t, f, "web1")
	spool := filepath.Join(m.dir, "spool")
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", spool).CombinedOutput(); err != nil {
		t.Fatalf("this test needs to mount a 1 MiB tmpfs (as root): mount: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// After the runner is gone (the fleet's own cleanup comes later).
		deadline := time.Now().Add(readyTimeout)
		for len(findProcs(" run-job "+spool+"/")) > 0 && time.Now().Before(deadline) {
			time.Sleep(pollEvery)
		}
		if out, err := exec.Command("umount", spool).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", spool, err, out)
			exec.Command("umount", "-l", spool).Run()
		}
	})
	id := callAsync(t, f, "web1", "command.run", "head -c 4000000 /dev/zero | tr '\\0' x", "max_output=100")
	e := waitFinished(t, f, id, 1).Minions["web1"]
	if e.kind() != "internal" || !strings.Contains(e.Error.Message, "no space left on device") {
		t.Fatalf("entry %+v; want kind internal, no space left on device", e.Error)
	}
	out, err := f.run("minion", "--state-dir", m.dir, "job", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var list []struct {
		JobID string `json:"job_id"`
		State string `json:"state"`
		Error *struct {
			Kind    string `json:"kind"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("minion job list --json: %v\n%s", err, out)
	}
	if len(list) != 1 || list[0].JobID != e.MinionJobID || list[0].State != "FINISHED" || list[0].Error == nil ||
		list[0].Error.Kind != e.Error.Kind || list[0].Error.Message != e.Error.Message {
		t.Errorf("minion job list: %s\nwant job %s FINISHED with %+v", out, e.MinionJobID, *e.Error)
	}
	show, err := f.run("minion", "--state-dir", m.dir, "job", "show", e.MinionJobID)
	if want := "error:    internal: " + e.Error.Message; err != nil || !strings.Contains(show, want) {
		t.Errorf("minion job show: %v\n%s\nwant %q", err, show, want)
	}
}
