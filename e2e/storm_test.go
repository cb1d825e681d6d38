//go:build linux

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// stormLockTimeout is the calls' --lock-timeout (and so their drivers'):
// a fifth of the default, so that the store is busy for longer than the
// lock timeout with the few calls a test can afford, as it is for the
// default with 200 (bench/async-storm.sh). It bounds how long one process
// may hold overlord.db, which is milliseconds, not the whole wait.
const stormLockTimeout = "2s"

// stormCalls is how many 'call --async' TestAsyncStorm starts at once on
// fleet f: enough that overlord.db stays busy for longer than the lock
// timeout on a busy 2-core machine, few enough for make test (fewer with
// race-built binaries, which are several times slower).
// bench/async-storm.sh runs the 200 calls to 10 minions.
func stormCalls(f *fleet) int {
	if f.race {
		return 30
	}
	return 60
}

// TestAsyncStorm: stormCalls 'overlord call --async', started at the same
// moment as separate processes on one state directory, are all accepted (exit 0, a job ID), and every job
// settles FINISHED with every minion ok while nobody runs 'job status'
// (which would start new drivers): each job's own driver carries it to
// the end, however long overlord.db stays busy. Not parallel: it is the
// load.
func TestAsyncStorm(t *testing.T) {
	names := []string{"web1", "web2", "web3", "web4", "web5"}
	f := startFleet(t, names...)

	type res struct {
		code           int
		err            error
		stdout, stderr string
	}
	stormCalls := stormCalls(f)
	results := make([]res, stormCalls)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range stormCalls {
		cmd, stdout, stderr := overlordCmd(f, "--lock-timeout", stormLockTimeout, "call", "*", "test.ping", "--async")
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			code, err := runCode(cmd)
			results[i] = res{code, err, stdout.String(), stderr.String()}
		}()
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	t.Logf("%d calls returned in %s", stormCalls, time.Since(start).Round(time.Millisecond))
	ids := map[string]bool{}
	refused := 0
	for i, r := range results {
		id := strings.TrimSpace(r.stdout)
		if r.err != nil || r.code != 0 || !jobIDPattern.MatchString(id) {
			refused++
			if refused <= 3 {
				t.Errorf("call %d: exit %d (%v), stdout %q, stderr %q; want 0 and a job ID", i, r.code, r.err, r.stdout, r.stderr)
			}
			continue
		}
		ids[id] = true
	}
	if refused > 0 || len(ids) != stormCalls {
		t.Errorf("%d of %d calls accepted (%d distinct IDs), %d refused; want all", stormCalls-refused, stormCalls, len(ids), refused)
	}

	// job list reads the store and starts no driver. The bound is a
	// guard against a hang, not a speed to meet.
	const settleWithin = 3 * time.Minute
	deadline := time.Now().Add(settleWithin)
	var open, failed []jobView
	for {
		open, failed = open[:0], failed[:0]
		jobs := jobList(t, f)
		for id := range ids {
			if j, ok := listed(jobs, id); !ok || j.State != "FINISHED" {
				open = append(open, j)
			} else if j.Summary != (summaryView{Total: len(names), OK: len(names)}) {
				failed = append(failed, j)
			}
		}
		if len(open) == 0 || time.Now().After(deadline) {
			break
		}
		// Jobs open with no driver left will never settle: no need to
		// wait out the guard.
		stalled := 0
		for _, j := range open {
			if len(drivers(f.stateDir, j.JobID)) == 0 {
				stalled++
			}
		}
		if stalled == len(open) {
			break
		}
		time.Sleep(250 * time.Millisecond) // each look is a process: not too many
	}
	t.Logf("jobs settled %s after the calls began", time.Since(start).Round(time.Millisecond))
	for i, j := range open {
		if i < 5 {
			t.Errorf("job %s: %s %+v, driver alive %v; want FINISHED\n%s", j.JobID, j.State, j.Summary,
				len(drivers(f.stateDir, j.JobID)) > 0, driverLog(f, j.JobID))
		}
	}
	if len(open) > 0 {
		t.Errorf("%d of %d accepted jobs not FINISHED with nobody polling", len(open), len(ids))
	}
	for _, j := range failed {
		// job status of a FINISHED job starts no driver.
		full, _, _ := jobStatus(t, f, j.JobID)
		t.Errorf("job %s FINISHED with %+v, want %d ok:\n%s", j.JobID, j.Summary, len(names), full)
	}
	// A driver logs a busy store and tries again; none gave up.
	for id := range ids {
		if log := driverLog(f, id); strings.Contains(log, "Error") {
			t.Errorf("driver of job %s ended with an error:\n%s", id, log)
		}
	}
}

// driverLog returns the log of job id's drivers.
func driverLog(f *fleet, id string) string {
	data, err := os.ReadFile(filepath.Join(f.stateDir, "drivers", id+".log"))
	if err != nil {
		return fmt.Sprintf("(no driver log: %v)", err)
	}
	return string(data)
}
