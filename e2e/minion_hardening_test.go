//go:build linux

package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAsyncJobSparesItsMinion: process.kill of the minion daemon's pid
// from an async job is refused, as it is in a synchronous call: the
// daemon tells its runners its pid ('minion run-job' reads it).
func TestAsyncJobSparesItsMinion(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1")
	web1 := mustMinion(t, f, "web1")
	pid := strconv.Itoa(web1.p.Pid())
	id := callAsync(t, f, "web1", "process.kill", pid, "signal=0")
	j := waitFinished(t, f, id, 1)
	e := j.Minions["web1"]
	if e.kind() != "bad_args" || !strings.Contains(e.Error.Message, pid+" is the minion itself") {
		t.Errorf("process.kill %s (the minion) from an async job: %+v, want bad_args: the minion itself", pid, e)
	}
	id = callAsync(t, f, "web1", "process.pkill", "serve --listen "+web1.addr, "signal=0")
	j = waitFinished(t, f, id, 0)
	var res struct{ Killed, Skipped []int }
	if err := json.Unmarshal(j.Minions["web1"].Result, &res); err != nil || len(res.Killed) != 0 || !slices.Contains(res.Skipped, web1.p.Pid()) {
		t.Errorf("process.pkill of the minion's command line from an async job: %s (%v), want it skipped", j.Minions["web1"].Result, err)
	}
}

// rpcPost sends body to minion m as the fleet's own overlord identity and
// returns the HTTP status and the answer.
func rpcPost(t *testing.T, f *fleet, m *minionProc, body string) (int, string) {
	t.Helper()
	pool := caPool(t, f.stateDir)
	id := loadPair(t, filepath.Join(f.stateDir, "overlord.crt"), filepath.Join(f.stateDir, "overlord.key"))
	tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: m.name, Certificates: []tls.Certificate{id}}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodPost, "https://"+m.addr+"/rpc", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%.100s: %v", body, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(data)
}

// TestStatusHugeMaxOutput: the reviewer's report, on a real minion: a
// Minion.Status asking for 1 TiB of output per job is answered with what
// the job has, and the minion lives on.
func TestStatusHugeMaxOutput(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1")
	web1 := mustMinion(t, f, "web1")
	id := callAsync(t, f, "web1", "command.run", "echo hello")
	j := waitFinished(t, f, id, 0)
	minionJob := j.Minions["web1"].MinionJobID
	code, body := rpcPost(t, f, web1, fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"Minion.Status","params":{"job_ids":[%q],"max_output":%d}}`, minionJob, int64(1)<<40))
	if code != http.StatusOK || !strings.Contains(body, `"output":"hello\n"`) {
		t.Errorf("Status with max_output 1 TiB: HTTP %d %.300s", code, body)
	}
	if _, err := rawPing(t.Context(), web1.addr, "web1", caPool(t, f.stateDir),
		loadPair(t, filepath.Join(f.stateDir, "overlord.crt"), filepath.Join(f.stateDir, "overlord.key"))); err != nil {
		t.Fatalf("the minion after it: %v\n%s", err, web1.p.logTail(20))
	}
}

// TestAuditSurvivesLongNames: a call with a 2 MB module name is refused
// as bad_args, leaves a short audit line, and 'minion audit' still reads
// the log.
func TestAuditSurvivesLongNames(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1")
	web1 := mustMinion(t, f, "web1")
	long := strings.Repeat("x", 2<<20)
	for range 3 {
		code, body := rpcPost(t, f, web1, `{"jsonrpc":"2.0","id":1,"method":"Minion.Call","params":{"module":"`+long+`","method":"ping"}}`)
		if code != http.StatusOK || !strings.Contains(body, `"kind":"bad_args"`) || len(body) > 4<<10 {
			t.Fatalf("a 2 MB module name: HTTP %d, %d bytes: %.300s", code, len(body), body)
		}
	}
	if _, err := f.overlord("call", "web1", "test.ping"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(web1.dir, "audit.log"))
	if err != nil || fi.Size() > 64<<10 {
		t.Errorf("audit.log after three 2 MB names: %v, %v bytes", err, fi.Size())
	}
	out, err := f.run("minion", "--state-dir", web1.dir, "audit", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 || !strings.Contains(lines[3], `"call":"test.ping"`) {
		t.Errorf("minion audit: %d lines, want 4 ending with test.ping:\n%.2000s", len(lines), out)
	}
}

// TestFetchOfAFIFO: fetching a FIFO from a real minion fails at once
// rather than holding the request for ever, and the minion serves on.
func TestFetchOfAFIFO(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1")
	web1 := mustMinion(t, f, "web1")
	fifo := filepath.Join(f.dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, body := rpcPost(t, f, web1, fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"Minion.ReadChunk","params":{"path":%q,"offset":0,"length":10}}`, fifo))
	if code != http.StatusOK || !strings.Contains(body, "not a regular file") || time.Since(start) > 5*time.Second {
		t.Errorf("ReadChunk of a FIFO: HTTP %d after %s: %.300s", code, time.Since(start).Round(time.Millisecond), body)
	}
}

// TestServeRefusesWritableStateDir: minion serve will not start in a
// state directory others can write, and says how to fix it.
func TestServeRefusesWritableStateDir(t *testing.T) {
	t.Parallel()
	f := startFleet(t)
	m, err := f.add("web1")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(m.dir, 0o777); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.path("minion"), "--state-dir", m.dir, "serve", "--listen", m.addr)
	cmd.Env, cmd.Dir = f.env, f.dir
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("minion serve in a 0777 state directory ran (killed after %s)\n%s", readyTimeout, out)
	}
	if err == nil || !strings.Contains(string(out), m.dir+" has mode 0777, writable by group or others; it must be 0755 (chmod 755 "+m.dir+")") {
		t.Errorf("minion serve in a 0777 state directory: %v\n%s", err, out)
	}
}
