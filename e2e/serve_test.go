//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// waitService waits until commands on f's state directory go through the
// service (-v says so).
func waitService(t *testing.T, f *fleet, p *proc) {
	t.Helper()
	// The socket first (a stat), then the CLI's own check: a process
	// started every few milliseconds would cost the other tests.
	waitFile(t, filepath.Join(f.stateDir, "overlord.sock"))
	for deadline := time.Now().Add(readyTimeout); ; time.Sleep(100 * time.Millisecond) {
		cmd, _, stderr := overlordCmd(f, "job", "list", "--limit", "1", "-v")
		if exitCode(t, cmd) == 0 && strings.Contains(stderr.String(), "via the service at") {
			return
		}
		if time.Now().After(deadline) || p.exited() {
			t.Fatalf("commands do not go through the service:\n%s\n%s", stderr, p.logTail(20))
		}
	}
}

// varying are the fields that differ between two runs of the same call.
var varying = map[string]bool{"job_id": true, "created_at": true, "finished_at": true, "updated_at": true, "duration_ms": true}

// drop removes the varying fields from a decoded JSON document.
func drop(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if varying[k] {
				delete(v, k)
			} else {
				drop(x)
			}
		}
	case []any:
		for _, x := range v {
			drop(x)
		}
	}
}

// callJSON runs a call with -o json and -v and returns its JSON document
// without what varies between runs, its exit status and stderr.
func callJSON(t *testing.T, f *fleet, args ...string) (string, int, string) {
	t.Helper()
	cmd, stdout, stderr := overlordCmd(f, append(append([]string{"call"}, args...), "-o", "json", "-v")...)
	code := exitCode(t, cmd)
	var doc any
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatalf("call %q -o json: exit %d, %v\n%s\n%s", args, code, err, stdout, stderr)
	}
	drop(doc)
	out, _ := json.Marshal(doc)
	return string(out), code, stderr.String()
}

// TestServeSameAsDirect: calls through the service and with --direct give
// the same JSON document and exit status, a stopped minion included, and
// -v says which way each went.
func TestServeSameAsDirect(t *testing.T) {
	t.Parallel()
	// Race-built: the service's calls and its pool of connections.
	f := startRaceFleet(t, "web1", "web2", "web3")
	if err := f.stop(mustMinion(t, f, "web3")); err != nil {
		t.Fatal(err)
	}
	p, _ := startServe(t, f)
	waitService(t, f, p)
	for _, args := range [][]string{
		{"web*", "command.run", "echo hello; echo oops >&2"},
		{"web[1-2]", "command.run", "exit 3"},
		{"*", "test.ping", "--connect-timeout", "2s"},
	} {
		through, code1, stderr1 := callJSON(t, f, args...)
		direct, code2, stderr2 := callJSON(t, f, append(args, "--direct")...)
		if through != direct || code1 != code2 {
			t.Errorf("call %q\nthrough the service: exit %d\n%s\nwith --direct: exit %d\n%s", args, code1, through, code2, direct)
		}
		if !strings.Contains(stderr1, "via the service at") || !strings.Contains(stderr2, "direct: --direct") {
			t.Errorf("-v does not say which way:\n%s\n%s", stderr1, stderr2)
		}
	}
	// A minion restarted between two calls is reached again on the next
	// call through the service, with no error.
	web1 := mustMinion(t, f, "web1")
	if err := f.stop(web1); err != nil {
		t.Fatal(err)
	}
	if err := f.start(web1); err != nil {
		t.Fatal(err)
	}
	if err := f.ready(web1); err != nil {
		t.Fatal(err)
	}
	if out, code, stderr := callJSON(t, f, "web1", "test.ping"); code != 0 {
		t.Errorf("after web1 restarted: exit %d\n%s\n%s", code, out, stderr)
	}
}

// TestServeAsyncJobs: 200 async jobs with the service up start no driver
// process, and all settle. (One minion: each job is a runner process
// there, and 200 are enough to show it.)
func TestServeAsyncJobs(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1")
	p, _ := startServe(t, f)
	waitService(t, f, p)
	const n = 200
	ids := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cmd, stdout, stderr := overlordCmd(f, "call", "*", "command.run", fmt.Sprintf("echo job%d", i), "--async", "-o", "json")
			if code, err := runCode(cmd); err != nil || code != 0 {
				t.Errorf("call --async %d: exit %d %v\n%s", i, code, err, stderr)
				return
			}
			var got struct {
				JobID string `json:"job_id"`
			}
			if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
				t.Errorf("call --async %d: %v\n%s", i, err, stdout)
			}
			ids[i] = got.JobID
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if d := findProcs(f.stateDir, "job", "drive"); len(d) > 0 {
		t.Errorf("%d driver processes with the service up: %v", len(d), d)
	}
	var list []jobView
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		list = jobList(t, f)
		open := 0
		for _, j := range list {
			if j.State != "FINISHED" {
				open++
			}
		}
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d jobs still open after 3 minutes", open, n)
		}
	}
	// Every job ok (job list has each summary); the output of a few,
	// first, middle and last, is each job's own.
	for _, j := range list {
		if j.Summary.OK != 1 {
			t.Errorf("job %s: %s", j.JobID, j)
		}
	}
	for _, i := range []int{0, n / 2, n - 1} {
		j, code, _ := jobStatus(t, f, ids[i])
		if code != 0 || j.Minions["web1"].stdout() != fmt.Sprintf("job%d\n", i) {
			t.Errorf("job %d (%s): exit %d\n%s", i, ids[i], code, j)
		}
	}
	if d := findProcs(f.stateDir, "job", "drive"); len(d) > 0 {
		t.Errorf("%d driver processes with the service up: %v", len(d), d)
	}
}

// TestServeKilled: kill -9 of the service while it drives jobs; a new
// service carries every job on, and no job runs twice on a minion.
func TestServeKilled(t *testing.T) {
	t.Parallel()
	// Race-built: the service driving async jobs, and adopting them.
	f := startRaceFleet(t, "web1", "web2")
	p, _ := startServe(t, f)
	waitService(t, f, p)
	marks := filepath.Join(f.dir, "marks")
	var ids []string
	for i := range 10 {
		// Each run of a job appends a line: a job run twice shows.
		ids = append(ids, callAsync(t, f, "*", "command.run", fmt.Sprintf("sleep 2; echo job%d-$(hostname) >>%s", i, marks)))
	}
	p.kill()
	// Nothing drives the jobs now; a new service adopts them all.
	p2, _ := startServe(t, f)
	waitService(t, f, p2)
	for _, id := range ids {
		waitFinished(t, f, id, 0)
	}
	data, err := os.ReadFile(marks)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, l := range strings.Fields(string(data)) {
		seen[l]++
	}
	if len(seen) != 10 {
		t.Errorf("%d distinct jobs ran, want 10:\n%s", len(seen), data)
	}
	for l, k := range seen {
		// Both minions share this host: each job ran once on each.
		if k != 2 {
			t.Errorf("%s ran %d times, want 2 (once per minion)", l, k)
		}
	}
	if d := findProcs(f.stateDir, "job", "drive"); len(d) > 0 {
		t.Errorf("%d driver processes with the service up: %v", len(d), d)
	}
}

// TestServeSocketOtherUser: the socket refuses a user other than the
// state directory's owner, whatever the modes let through: the command
// works without the service, and -v says why.
func TestServeSocketOtherUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatal("this test runs a command as another user (uid 65534): run the tests as root, as CI does")
	}
	f := startFleet(t)
	p, _ := startServe(t, f)
	waitService(t, f, p)
	sock := filepath.Join(f.stateDir, "overlord.sock")
	for path, mode := range map[string]os.FileMode{filepath.Dir(f.dir): 0o755, f.dir: 0o755, f.stateDir: 0o755, sock: 0o666, filepath.Dir(f.bin): 0o755, f.bin: 0o755} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(f.path("overlord"), "--state-dir", f.stateDir, "job", "list", "-v")
	cmd.Env = f.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "403") || !strings.Contains(string(out), "direct: the service") {
		t.Errorf("as uid 65534:\n%s", out)
	}
	if !strings.Contains(p.logTail(50), "refused a connection to the local socket") {
		t.Errorf("the service did not log the refusal:\n%s", p.logTail(20))
	}
}
