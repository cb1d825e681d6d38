//go:build linux

package e2e

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
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
