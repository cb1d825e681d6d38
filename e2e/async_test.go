//go:build linux

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestAsyncFleet: 'call --async' to five minions returns a job ID at once;
// the job is RUNNING or PARTIAL while the minions work (job status exits
// 4, and so does --wait when its own --timeout passes first), then
// FINISHED with every minion's result; job list shows it all along; its
// driver goes away once it is done.
func TestAsyncFleet(t *testing.T) {
	t.Parallel()
	names := []string{"web1", "web2", "web3", "web4", "web5"}
	f := startFleet(t, names...)
	g := newGate(t, "go")
	id := callAsync(t, f, "*", "command.run", g.wait()+"; echo done")

	j, code, _ := jobStatus(t, f, id)
	if code != 4 {
		t.Errorf("job status of a job in progress: exit %d, want 4", code)
	}
	if j.State != "RUNNING" && j.State != "PARTIAL" {
		t.Errorf("job status right after the call: state %s, want RUNNING or PARTIAL", j.State)
	}
	if j.Summary != (summaryView{Total: 5, Pending: 5}) {
		t.Errorf("summary %+v, want 5 pending", j.Summary)
	}
	if got := strings.Join(j.names(), " "); got != strings.Join(names, " ") {
		t.Errorf("minions %s, want %s", got, strings.Join(names, " "))
	}
	jobs := jobList(t, f)
	if l, ok := listed(jobs, id); !ok || l.State == "FINISHED" {
		t.Errorf("job list: job %s listed %v, state %q; want listed, not FINISHED", id, ok, l.State)
	}

	// Once every minion has taken its part, the job is PARTIAL and each
	// entry names the minion's own job.
	j = waitJob(t, f, id, readyTimeout, "PARTIAL", func(j jobView) bool { return j.State == "PARTIAL" })
	for _, n := range names {
		if e := j.Minions[n]; e.MinionJobID == "" || e.State == "FINISHED" {
			t.Errorf("%s: entry %+v, want a minion job ID, not FINISHED", n, e)
		}
	}

	// --wait gives up after its --timeout: exit 4, the job as it stands.
	start := time.Now()
	j, code, stderr := jobStatus(t, f, id, "--wait", "--timeout", "500ms")
	if took := time.Since(start); code != 4 || j.State != "PARTIAL" || took < 500*time.Millisecond {
		t.Errorf("job status --wait --timeout 500ms: exit %d, state %s after %s; want exit 4, PARTIAL, after 500ms\n%s", code, j.State, took, stderr)
	}
	if !strings.Contains(stderr, "still PARTIAL after 500ms") {
		t.Errorf("job status --wait --timeout 500ms: stderr %q, want it to say the job is still PARTIAL", stderr)
	}

	g.open(t)
	j = waitFinished(t, f, id, 0)
	if j.Summary != (summaryView{Total: 5, OK: 5}) || j.FinishedAt == "" {
		t.Errorf("finished job: summary %+v, finished_at %q; want 5 ok", j.Summary, j.FinishedAt)
	}
	for _, n := range names {
		e := j.Minions[n]
		if e.State != "FINISHED" || !e.OK || e.stdout() != "done\n" || e.MinionJobID == "" {
			t.Errorf("%s: %+v (result %s), want FINISHED ok with stdout \"done\\n\"", n, e, e.Result)
		}
	}
	// The same in text, as a person reads it.
	cmd, stdout, _ := overlordCmd(f, "job", "status", id)
	if code := exitCode(t, cmd); code != 0 || !strings.Contains(stdout.String(), fmt.Sprintf("5 minions: 5 ok, 0 failed (job %s, FINISHED)", id)) {
		t.Errorf("job status (text): exit %d\n%s", code, stdout)
	}
	if l, _ := listed(jobList(t, f), id); l.State != "FINISHED" || l.Summary != (summaryView{Total: 5, OK: 5}) {
		t.Errorf("job list after the end: %+v, want FINISHED with 5 ok", l)
	}
	var pids []int
	for _, p := range drivers(f.stateDir, id) {
		pids = append(pids, p.pid)
	}
	if err := waitGone(readyTimeout, pids...); err != nil {
		t.Errorf("driver of a FINISHED job: %v", err)
	}
}

// TestAsyncPartialOutput: a running command's output so far is visible:
// the entries turn PARTIAL, 'job status --follow' prints each line as it
// comes, prefixed with the minion's name, and 'minion job show' on the
// minion shows it. The command waits on a gate between its two lines
// (rather than sleeping), so "while it runs" holds as long as the test
// needs.
func TestAsyncPartialOutput(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2")
	g := newGate(t, "go")
	id := callAsync(t, f, "*", "command.run", "echo first; "+g.wait()+"; echo second")

	follow, _, stderr := overlordCmd(f, "job", "status", id, "--follow")
	follow.Stdout = nil
	out, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	followDone := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		followDone <- follow.Wait()
	}()
	var seen []string
	next := func(timeout time.Duration) (string, bool) {
		select {
		case l, ok := <-lines:
			if ok {
				seen = append(seen, l)
			}
			return l, ok
		case <-time.After(timeout):
			return "", false
		}
	}
	reaped := false
	defer func() {
		if !reaped {
			_ = follow.Process.Kill()
			for range lines {
			}
			<-followDone
		}
	}()

	// The first line of each minion is printed while the command waits.
	want := map[string]bool{"web1| first": true, "web2| first": true}
	deadline := time.Now().Add(15 * time.Second)
	for len(want) > 0 {
		l, ok := next(time.Until(deadline))
		if !ok {
			t.Fatalf("job status --follow: still waiting for %v; printed:\n%s", want, strings.Join(seen, "\n"))
		}
		delete(want, l)
	}

	// The driver long-polls the minions, so PARTIAL may show a few
	// seconds after the output.
	j := waitJob(t, f, id, 15*time.Second, "PARTIAL on both minions", func(j jobView) bool {
		return j.Minions["web1"].State == "PARTIAL" && j.Minions["web2"].State == "PARTIAL"
	})
	if j.State != "PARTIAL" || j.Summary.Pending != 2 {
		t.Errorf("job with output so far: state %s, summary %+v; want PARTIAL, 2 pending", j.State, j.Summary)
	}

	// On the minion itself, the job and its output so far.
	web1 := mustMinion(t, f, "web1")
	show, err := f.run("minion", "--state-dir", web1.dir, "job", "show", j.Minions["web1"].MinionJobID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(show, "state:    PARTIAL") || !strings.HasSuffix(show, "output:\nfirst\n") {
		t.Errorf("minion job show while the job runs:\n%s\nwant state PARTIAL and output \"first\" alone", show)
	}

	g.open(t)
	for _, ok := next(30 * time.Second); ok; _, ok = next(30 * time.Second) {
	}
	select {
	case err := <-followDone:
		reaped = true
		if err != nil {
			t.Errorf("job status --follow: %v\n%s", err, stderr)
		}
	case <-time.After(readyTimeout):
		t.Fatalf("job status --follow still running after the job ended; printed:\n%s", strings.Join(seen, "\n"))
	}
	printed := strings.Join(seen, "\n")
	for _, n := range []string{"web1", "web2"} {
		first := indexOf(seen, n+"| first")
		second := indexOf(seen, n+"| second")
		if first < 0 || second < 0 || second < first {
			t.Errorf("job status --follow: want %[1]s| first, then %[1]s| second:\n%s", n, printed)
		}
	}
	if !strings.Contains(printed, fmt.Sprintf("2 minions: 2 ok, 0 failed (job %s, FINISHED)", id)) {
		t.Errorf("job status --follow does not end with the results:\n%s", printed)
	}
	j = waitFinished(t, f, id, 0)
	for _, n := range []string{"web1", "web2"} {
		if got := j.Minions[n].stdout(); got != "first\nsecond\n" {
			t.Errorf("%s: stdout %q, want \"first\\nsecond\\n\"", n, got)
		}
	}
}

func indexOf(lines []string, s string) int {
	for i, l := range lines {
		if l == s {
			return i
		}
	}
	return -1
}

// TestAsyncMinionRestart: a minion stopped (SIGTERM) and started again on
// the same state directory and port while its job runs adopts the job's
// runner (web1); a minion that is down while its job ends ingests the
// result the runner left when it comes back (web2). Either way the job
// ends ok.
func TestAsyncMinionRestart(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2")
	web1, web2 := mustMinion(t, f, "web1"), mustMinion(t, f, "web2")
	started := filepath.Join(f.dir, "started")
	g := newGate(t, "go")
	id := callAsync(t, f, "*", "command.run",
		fmt.Sprintf("echo started; echo \"$PWD\" >> %s; %s; echo done", shellQuote(started), g.wait()))
	waitLines(t, started, 2)

	runners := map[*minionProc]procInfo{}
	for _, m := range []*minionProc{web1, web2} {
		r := findProcs(" run-job " + filepath.Join(m.dir, "spool") + "/")
		if len(r) != 1 {
			t.Fatalf("%s's runner: found %v, want one process", m.name, r)
		}
		runners[m] = r[0]
		if err := f.stop(m); err != nil {
			t.Fatal(err)
		}
		if !alive(r[0].pid) {
			t.Fatalf("%s's runner (pid %d) did not outlive its daemon", m.name, r[0].pid)
		}
	}

	// web1 comes back while the job runs.
	off := logSize(web1.p)
	if err := f.start(web1); err != nil {
		t.Fatal(err)
	}
	if err := f.ready(web1); err != nil {
		t.Fatal(err)
	}
	waitLog(t, web1.p, off, `msg="settled jobs left running" ingested=0 adopted=1 lost=0`)

	// web2 comes back after the job ended.
	g.open(t)
	if err := waitGone(readyTimeout, runners[web2].pid); err != nil {
		t.Fatal(err)
	}
	off = logSize(web2.p)
	if err := f.start(web2); err != nil {
		t.Fatal(err)
	}
	if err := f.ready(web2); err != nil {
		t.Fatal(err)
	}
	waitLog(t, web2.p, off, `msg="settled jobs left running" ingested=1 adopted=0 lost=0`)

	j := waitFinished(t, f, id, 0)
	for _, n := range []string{"web1", "web2"} {
		if e := j.Minions[n]; !e.OK || e.stdout() != "started\ndone\n" {
			t.Errorf("%s: %+v (result %s), want ok with stdout \"started\\ndone\\n\"", n, e, e.Result)
		}
	}
}

// TestAsyncRunnerDies: a runner killed (SIGKILL) without a result is
// noticed by its minion: the entry ends lost, naming the runner, and what
// the command started goes with the runner's process group.
func TestAsyncRunnerDies(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1")
	web1 := mustMinion(t, f, "web1")
	pidFile := filepath.Join(f.dir, "child")
	id := callAsync(t, f, "web1", "command.run",
		fmt.Sprintf("sleep 300 & echo $! > %s; wait", shellQuote(pidFile)))
	child, err := strconv.Atoi(waitLines(t, pidFile, 1)[0])
	if err != nil {
		t.Fatal(err)
	}
	r := findProcs(" run-job " + filepath.Join(web1.dir, "spool") + "/")
	if len(r) != 1 {
		t.Fatalf("runner: found %v, want one process", r)
	}
	if err := syscall.Kill(r[0].pid, syscall.SIGKILL); err != nil { // the runner alone
		t.Fatal(err)
	}
	j := waitFinished(t, f, id, 1)
	e := j.Minions["web1"]
	if want := fmt.Sprintf("the job's runner (pid %d) ended without a result", r[0].pid); e.kind() != "lost" || e.Error.Message != want {
		t.Errorf("entry %+v, want kind lost: %s", e.Error, want)
	}
	if err := waitGone(2*time.Second, child); err != nil {
		t.Errorf("the command's child after its runner was lost: %v", err)
	}
}

// TestAsyncMinionDies: a minion killed for good (SIGKILL) during an async
// job with a short --timeout does not hold the job up: at the deadline
// its entry is FINISHED with kind timeout (the deadline's), the
// others are ok, and 'job status --wait' exits 1.
func TestAsyncMinionDies(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2", "web3")
	started := filepath.Join(f.dir, "started")
	g := newGate(t, "go")
	begin := time.Now()
	id := callAsync(t, f, "*", "command.run",
		fmt.Sprintf("echo \"$PWD\" >> %s; %s; echo done", shellQuote(started), g.wait()), "--timeout", "5s")
	waitLines(t, started, 3)
	if err := f.kill(mustMinion(t, f, "web2")); err != nil {
		t.Fatal(err)
	}
	g.open(t)

	j := waitFinished(t, f, id, 1)
	t.Logf("job settled %s after the call", time.Since(begin).Round(time.Millisecond))
	if j.Summary != (summaryView{Total: 3, OK: 2, Failed: 1}) {
		t.Errorf("summary %+v, want 2 ok, 1 failed", j.Summary)
	}
	for _, n := range []string{"web1", "web3"} {
		if e := j.Minions[n]; !e.OK || e.stdout() != "done\n" {
			t.Errorf("%s: %+v, want ok", n, e)
		}
	}
	// What ended web2's entry is the job's deadline, not the minute a
	// minion may stay out of reach (that would be unreachable).
	e := j.Minions["web2"]
	if e.kind() != "timeout" || !strings.Contains(e.Error.Message, "job deadline passed") {
		t.Errorf("web2, killed: %+v, want FINISHED with kind timeout: job deadline passed", e.Error)
	}
	if e.State != "FINISHED" || e.OK {
		t.Errorf("web2, killed: %+v, want FINISHED, not ok", e)
	}
}

// TestAsyncDriverKilled: the driver of an async job killed with SIGKILL
// mid-job is replaced by 'job status --wait', which carries the job on
// with the minion jobs already submitted: the job finishes, and the
// command ran once on each minion.
func TestAsyncDriverKilled(t *testing.T) {
	t.Parallel()
	names := []string{"web1", "web2", "web3"}
	f := startFleet(t, names...)
	ran := filepath.Join(f.dir, "ran")
	g := newGate(t, "go")
	id := callAsync(t, f, "*", "command.run",
		fmt.Sprintf("echo \"$PWD\" >> %s; %s; echo done", shellQuote(ran), g.wait()))
	waitLines(t, ran, 3)

	killDriver(t, f, id)

	wait, stdout, stderr := overlordCmd(f, "job", "status", id, "--wait", "--timeout", "60s", "-o", "json")
	if err := wait.Start(); err != nil {
		t.Fatal(err)
	}
	waitDone := make(chan error, 1)
	go func() { waitDone <- wait.Wait() }()
	reaped := false
	defer func() {
		if !reaped {
			_ = wait.Process.Kill()
			<-waitDone
		}
	}()
	// A new driver takes over, while the commands still wait.
	deadline := time.Now().Add(readyTimeout)
	for len(drivers(f.stateDir, id)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no new driver for job %s %s after 'job status --wait' started", id, readyTimeout)
		}
		time.Sleep(pollEvery)
	}
	g.open(t)
	select {
	case err := <-waitDone:
		reaped = true
		if err != nil {
			t.Fatalf("job status --wait: %v\n%s%s", err, stdout, stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("job status --wait still waiting after 60s")
	}
	if !strings.Contains(stderr.String(), "job "+id+" had lost its driver; a new one carries it on") {
		t.Errorf("job status --wait: stderr %q, want it to say the driver was replaced", stderr)
	}
	var j jobView
	if err := json.Unmarshal(stdout.Bytes(), &j); err != nil {
		t.Fatal(err)
	}
	if j.State != "FINISHED" || j.Summary != (summaryView{Total: 3, OK: 3}) {
		t.Errorf("job: %s", j)
	}

	// Once on each minion: one line per minion in ran, one job per
	// minion in its own list.
	lines := waitLines(t, ran, 3)
	if len(lines) != 3 {
		t.Errorf("the command ran %d times on 3 minions:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for _, n := range names {
		m := mustMinion(t, f, n)
		count := 0
		for _, l := range lines {
			if l == m.dir || strings.HasPrefix(l, m.dir+string(filepath.Separator)) {
				count++
			}
		}
		if count != 1 {
			t.Errorf("%s ran the command %d times, want once", n, count)
		}
		out, err := f.run("minion", "--state-dir", m.dir, "job", "list", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var mjobs []struct {
			Origin string `json:"origin_job_id"`
		}
		if err := json.Unmarshal([]byte(out), &mjobs); err != nil {
			t.Fatalf("minion job list --json: %v\n%s", err, out)
		}
		count = 0
		for _, mj := range mjobs {
			if mj.Origin == id {
				count++
			}
		}
		if count != 1 {
			t.Errorf("%s has %d jobs for overlord job %s, want 1:\n%s", n, count, id, out)
		}
	}
}

// TestAsyncCancelTree: 'job cancel' of a job whose command started
// children stops the whole tree on every minion, and the entries end
// cancelled.
func TestAsyncCancelTree(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2")
	pidFile := filepath.Join(f.dir, "pids")
	id := callAsync(t, f, "*", "command.run",
		fmt.Sprintf(`sleep 300 & a=$!; sleep 300 & b=$!; echo "$$ $a $b" >> %s; wait`, shellQuote(pidFile)))
	var pids []int
	for _, l := range waitLines(t, pidFile, 2) {
		for _, w := range strings.Fields(l) {
			pid, err := strconv.Atoi(w)
			if err != nil {
				t.Fatalf("%s: %q", pidFile, l)
			}
			pids = append(pids, pid)
		}
	}
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("pid %d of the command is not running before the cancel", pid)
		}
	}

	out, err := f.overlord("job", "cancel", id)
	if err != nil {
		t.Fatal(err)
	}
	if want := "cancel requested for job " + id + "\n"; out != want {
		t.Errorf("job cancel printed %q, want %q", out, want)
	}
	j := waitFinished(t, f, id, 1)
	for _, n := range []string{"web1", "web2"} {
		if e := j.Minions[n]; e.State != "FINISHED" || e.kind() != "cancelled" {
			t.Errorf("%s: %+v, want FINISHED with kind cancelled", n, e)
		}
	}
	// The minion signals the whole group before it reports the cancel.
	if err := waitGone(2*time.Second, pids...); err != nil {
		t.Errorf("after the cancel: %v (shells and their children: %v)", err, pids)
	}
	for _, n := range []string{"web1", "web2"} {
		if r := findProcs(" run-job " + filepath.Join(mustMinion(t, f, n).dir, "spool") + "/"); len(r) != 0 {
			t.Errorf("%s: runner still there after the cancel: %v", n, r)
		}
	}
}

// TestAsyncCancelEarly: 'job cancel' right after 'call --async', before
// or while the driver submits: whichever minions it reached or not, every
// entry ends cancelled and no command is left running.
func TestAsyncCancelEarly(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2", "web3")
	for range 3 {
		// The token marks this test's commands in /proc.
		token := filepath.Join(f.dir, "early")
		id := callAsync(t, f, "*", "command.run", "sleep 300; : "+shellQuote(token))
		if out, err := f.overlord("job", "cancel", id); err != nil || out != "cancel requested for job "+id+"\n" {
			t.Fatalf("job cancel: %v\n%s", err, out)
		}
		j := waitFinished(t, f, id, 1)
		reached := 0
		for _, n := range j.names() {
			e := j.Minions[n]
			if e.kind() != "cancelled" {
				t.Errorf("%s: %+v, want kind cancelled", n, e.Error)
			}
			if e.MinionJobID != "" {
				reached++
			}
		}
		t.Logf("job %s: cancelled on %d minions it had reached, and before it reached %d", id, reached, 3-reached)
		// Neither a command nor a runner (which may not have started
		// the command yet) is left.
		var pids []int
		for _, p := range append(findProcs(token), findProcs(" run-job "+f.dir+"/")...) {
			pids = append(pids, p.pid)
		}
		if err := waitGone(2*time.Second, pids...); err != nil {
			t.Errorf("runners and commands of a cancelled job: %v", err)
		}
	}
}

// TestAsyncConcurrentCalls: twenty 'overlord call --async', started at
// the same moment from separate processes on one state directory, all
// land (twenty IDs, twenty more jobs listed) and all finish, with no
// error about overlord.db's lock anywhere.
func TestAsyncConcurrentCalls(t *testing.T) {
	t.Parallel()
	const n = 20
	// Race-built: CLIs, drivers, runners and minions' job stores, all at
	// once.
	f := startRaceFleet(t, "web1", "web2")
	before := len(jobList(t, f))

	type res struct {
		code           int
		err            error
		stdout, stderr string
	}
	results := make([]res, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		cmd, stdout, stderr := overlordCmd(f, "call", "*", "test.sleep", "0.5", "--async")
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			code, err := runCode(cmd)
			results[i] = res{code, err, stdout.String(), stderr.String()}
		}()
	}
	close(gate)
	wg.Wait()

	ids := map[string]bool{}
	for i, r := range results {
		id := strings.TrimSpace(r.stdout)
		if r.err != nil || r.code != 0 || !jobIDPattern.MatchString(id) || r.stderr != "" {
			t.Errorf("call %d: exit %d (%v), stdout %q, stderr %q; want 0, a job ID, nothing", i, r.code, r.err, r.stdout, r.stderr)
			continue
		}
		ids[id] = true
	}
	if len(ids) != n {
		t.Fatalf("%d distinct job IDs from %d calls", len(ids), n)
	}
	jobs := jobList(t, f)
	if len(jobs) != before+n {
		t.Errorf("job list: %d jobs, want %d", len(jobs), before+n)
	}
	for id := range ids {
		if _, ok := listed(jobs, id); !ok {
			t.Errorf("job %s not in job list", id)
		}
	}

	var mu sync.Mutex
	for id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd, stdout, stderr := overlordCmd(f, "job", "status", id, "--wait", "--timeout", "60s", "-o", "json")
			code, err := runCode(cmd)
			var j jobView
			if err == nil {
				err = json.Unmarshal(stdout.Bytes(), &j)
			}
			mu.Lock()
			defer mu.Unlock()
			if code != 0 || err != nil || j.State != "FINISHED" || j.Summary != (summaryView{Total: 2, OK: 2}) {
				t.Errorf("job status %s --wait: exit %d, %v\n%s%s", id, code, err, stdout, stderr)
			}
			if s := stderr.String(); s != "" {
				t.Errorf("job status %s --wait: stderr %q", id, s)
			}
		}()
	}
	wg.Wait()
	for id := range ids {
		log := filepath.Join(f.stateDir, "drivers", id+".log")
		if data, err := os.ReadFile(log); err != nil || strings.Contains(string(data), "lock") || strings.Contains(string(data), "busy") || strings.Contains(string(data), "Error") {
			t.Errorf("driver log %s: %v\n%s", log, err, data)
		}
	}
}

// TestJobPurge: 'job purge --older-than 0s --keep N' deletes the FINISHED
// jobs beyond the N newest, with their driver files; a job still running
// is never purged, however old.
func TestJobPurge(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1")
	g := newGate(t, "go")
	running := callAsync(t, f, "web1", "command.run", g.wait())
	done := callAsync(t, f, "web1", "test.ping")
	waitFinished(t, f, done, 0)
	var pings []string
	for range 4 {
		cmd, stdout, _ := overlordCmd(f, "call", "web1", "test.ping", "-o", "json")
		if code := exitCode(t, cmd); code != 0 {
			t.Fatalf("call: exit %d", code)
		}
		var j jobView
		if err := json.Unmarshal(stdout.Bytes(), &j); err != nil {
			t.Fatal(err)
		}
		pings = append(pings, j.JobID)
	}
	driverFiles := func(id string) []string {
		m, _ := filepath.Glob(filepath.Join(f.stateDir, "drivers", id+".*"))
		return m
	}
	if len(driverFiles(done)) == 0 {
		t.Fatalf("no driver files for async job %s", done)
	}

	purge := func(args ...string) string {
		t.Helper()
		out, err := f.overlord(append([]string{"job", "purge"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	ids := func() []string {
		var s []string
		for _, j := range jobList(t, f) {
			s = append(s, j.JobID)
		}
		return s
	}
	if out := purge("--older-than", "1h"); out != "purged 0 jobs\n" {
		t.Errorf("purge --older-than 1h: %q, want purged 0 jobs", out)
	}
	// Newest first: pings[3] and pings[2] are kept; pings[1], pings[0]
	// and done go; running stays, older than all of them.
	if out := purge("--older-than", "0s", "--keep", "2"); out != "purged 3 jobs\n" {
		t.Errorf("purge --older-than 0s --keep 2: %q, want purged 3 jobs", out)
	}
	if got, want := strings.Join(ids(), " "), strings.Join([]string{pings[3], pings[2], running}, " "); got != want {
		t.Errorf("jobs left: %s, want %s", got, want)
	}
	if m := driverFiles(done); len(m) != 0 {
		t.Errorf("purged job's driver files still there: %v", m)
	}
	if len(driverFiles(running)) == 0 {
		t.Errorf("the running job's driver files are gone")
	}
	// Without --keep every FINISHED job goes; the running job stays.
	if out := purge("--older-than", "0s"); out != "purged 2 jobs\n" {
		t.Errorf("purge --older-than 0s: %q, want purged 2 jobs", out)
	}
	if got := strings.Join(ids(), " "); got != running {
		t.Errorf("jobs left: %s, want the running job %s alone", got, running)
	}
	if j, code, _ := jobStatus(t, f, running); code != 4 || j.State == "FINISHED" {
		t.Errorf("running job after the purges: exit %d, state %s", code, j.State)
	}

	g.open(t)
	waitFinished(t, f, running, 0)
	if out := purge("--older-than", "0s"); out != "purged 1 jobs\n" && out != "purged 1 job\n" {
		t.Errorf("purge of the last job, now finished: %q", out)
	}
	if left := ids(); len(left) != 0 {
		t.Errorf("jobs left: %v, want none", left)
	}
}
