package minion

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// TestAsyncNoRunnerLostAtStart is issue 8's concurrent submits, smaller
// (the 50 to each of 10 minions, 500 jobs, took 38 s under -race;
// 0 lost): jobs whose runners start while the sweeper and callers' status
// polls judge them alive or dead as often as they can. None may be called
// lost: a runner is alive from the moment it is started.
// TestAsyncRunnerAliveFromItsStart is the one that reproduces the race.
func TestAsyncNoRunnerLostAtStart(t *testing.T) {
	t.Parallel()
	const minions, perMinion = 5, 30
	var as []*asyncJobs
	for range minions {
		a := newAsync(t, t.TempDir())
		a.maxPerCaller = perMinion
		t.Cleanup(func() { a.Close() })
		as = append(as, a)
	}
	var mu sync.Mutex
	var lost []string
	var wg sync.WaitGroup
	for m, a := range as {
		for i := range perMinion {
			wg.Add(1)
			go func() {
				defer wg.Done()
				j, _, err := a.submit("tester", &rpc.SubmitParams{OriginJobID: fmt.Sprintf("o-%d-%d", m, i), Module: "test", Method: "ping"})
				if err != nil {
					mu.Lock()
					lost = append(lost, fmt.Sprintf("minion %d submit %d: %v", m, i, err))
					mu.Unlock()
					return
				}
				// Poll as a caller would, as fast as it can: each poll
				// settles the job.
				deadline := time.Now().Add(2 * time.Minute)
				for {
					st, err := a.status(&rpc.StatusParams{JobIDs: []string{j.ID}, MaxOutput: -1}, "")
					if err == nil && st[0].State == status.Finished {
						waitRunnerGone(t, a.dir(j.ID))
						if !st[0].OK {
							mu.Lock()
							lost = append(lost, fmt.Sprintf("minion %d job %s: %+v", m, j.ID, st[0].Error))
							mu.Unlock()
						}
						return
					}
					if time.Now().After(deadline) {
						mu.Lock()
						lost = append(lost, fmt.Sprintf("minion %d job %s: not finished after 2 minutes (%v)", m, j.ID, err))
						mu.Unlock()
						return
					}
					time.Sleep(time.Millisecond)
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("%d jobs on %d minions, %d not ok", minions*perMinion, minions, len(lost))
	for _, l := range lost {
		t.Error(l)
	}
}

// TestAsyncRunnerAliveFromItsStart judges runners alive or dead right
// after they are started, when the old check (the runner's command line
// in /proc) could still see the child in the middle of its execve, with
// no command line yet. Every one of them must be judged alive.
func TestAsyncRunnerAliveFromItsStart(t *testing.T) {
	t.Parallel()
	a := newAsync(t, t.TempDir())
	defer a.Close()
	const n = 100
	var lost, dirs []string
	defer func() {
		for _, d := range dirs {
			waitRunnerGone(t, d)
		}
	}()
	for i := range n {
		j, _, err := a.store.submit("tester", fmt.Sprintf("o%d", i), nil, func(id string) Job {
			return Job{ID: id, OriginJobID: fmt.Sprintf("o%d", i), Caller: "tester", Module: "test", Method: "sleep",
				Args: map[string]any{"seconds": 0.5}, State: status.Running, CreatedAt: time.Now().UTC()}
		})
		if err != nil {
			t.Fatal(err)
		}
		pid, ticks, err := a.start(j)
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, a.dir(j.ID))
		j.PID, j.StartTicks, j.BootID = pid, ticks, a.bootID
		if !a.isRunner(j) {
			lost = append(lost, j.ID)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d runners judged dead right after their start: %v", len(lost), n, lost)
	}
}

// waitRunnerGone waits until the runner of the job spooled in dir has
// exited: its lock is free.
func waitRunnerGone(t testing.TB, dir string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		held, known := runnerLockHeld(dir)
		if known && !held {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the runner of %s still runs (lock known %v)", dir, known)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
