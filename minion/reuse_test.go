package minion

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/overlordhq/overlord/status"
)

// bystander starts a process that is not a job's runner, leading a
// process group of its own, with note in its command line; it is killed
// when the test ends.
func bystander(t *testing.T, note string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 60; : "+note)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	return cmd
}

// putRunning records a RUNNING job in a's store as JSON fields, the way
// a daemon (this one or an older one) would have; it has no spool but a
// directory.
func putRunning(t *testing.T, a *asyncJobs, fields map[string]any) string {
	t.Helper()
	id := "01a1fe00-0000-7000-8000-00000000beef"
	rec := map[string]any{"job_id": id, "origin_job_id": "o", "caller": "tester", "module": "test", "method": "sleep",
		"state": "RUNNING", "created_at": time.Now().Add(-time.Hour).UTC()}
	for k, v := range fields {
		rec[k] = v
	}
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	err = a.store.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(mbOrigins).Put(originKey("tester", "o"), []byte(id)); err != nil {
			return err
		}
		return tx.Bucket(mbJobs).Put([]byte(id), data)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(a.dir(id), 0o700); err != nil {
		t.Fatal(err)
	}
	return id
}

// alive reports whether pid exists and is not a zombie.
func aliveProc(pid int) bool { return syscall.Kill(pid, 0) == nil && !isZombie(pid) }

// signalled says how process pid shows that it was sent a signal ("" if it
// does not): it is gone, exiting, or has a signal pending. The daemon
// sends its signals (kill(2)) before settle or cancel returns, and a signal
// sent is pending until the process next runs, then kills it: so right
// after the call, a signal sent shows here without waiting.
func signalled(pid int) string {
	if !aliveProc(pid) {
		return "it is gone"
	}
	const pfExiting = 0x4 // PF_EXITING in /proc/PID/stat's flags
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return err.Error()
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 7 {
		return fmt.Sprintf("unreadable /proc/%d/stat %q", pid, stat)
	}
	if flags, _ := strconv.ParseUint(fields[6], 10, 64); flags&pfExiting != 0 {
		return "it is exiting"
	}
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return err.Error()
	}
	for _, line := range strings.Split(string(st), "\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "SigPnd" || k == "ShdPnd" {
			if n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err != nil || n != 0 {
				return fmt.Sprintf("%s %s", k, strings.TrimSpace(v))
			}
		}
	}
	return ""
}

// A job whose recorded runner pid now belongs to another process (a
// restart, a reboot, pid reuse) is settled or cancelled without that
// process's group being signalled.
func TestReusedRunnerPIDIsNotSignalled(t *testing.T) {
	tests := []struct {
		name   string
		cancel bool
		// like is set when the process's command line names the job's
		// spool directory, as its runner's would.
		like   bool
		fields func(pid int, ticks uint64, boot string) map[string]any
	}{
		{"settle, recorded by an older daemon", false, false, func(pid int, _ uint64, _ string) map[string]any {
			return map[string]any{"pid": pid}
		}},
		{"settle, another start time", false, true, func(pid int, ticks uint64, boot string) map[string]any {
			return map[string]any{"pid": pid, "start_ticks": ticks + 1, "boot_id": boot}
		}},
		{"cancel, another start time", true, true, func(pid int, ticks uint64, boot string) map[string]any {
			return map[string]any{"pid": pid, "start_ticks": ticks + 1, "boot_id": boot}
		}},
		{"cancel, another boot", true, true, func(pid int, ticks uint64, _ string) map[string]any {
			return map[string]any{"pid": pid, "start_ticks": ticks, "boot_id": "another-boot"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAsync(t, t.TempDir())
			defer a.Close()
			id := "01a1fe00-0000-7000-8000-00000000beef"
			note := "unrelated"
			if tt.like {
				note = a.dir(id)
			}
			b := bystander(t, note)
			pid := b.Process.Pid
			ticks, err := procStartTicks(pid)
			if err != nil {
				t.Fatal(err)
			}
			putRunning(t, a, tt.fields(pid, ticks, bootID()))
			j, err := a.store.get(id)
			if err != nil {
				t.Fatal(err)
			}
			if tt.cancel {
				if _, err := a.cancel(id, "", "tester"); err != nil {
					t.Fatal(err)
				}
			} else if _, err = a.settle(j, true); err != nil {
				t.Fatal(err)
			}
			if why := signalled(pid); why != "" {
				t.Fatalf("process %d, which took over the runner's pid, was signalled: %s", pid, why)
			}
			if j, _ = a.store.get(id); j.State != status.Finished {
				t.Errorf("job %s, want FINISHED (its runner is gone)", j.State)
			}
		})
	}
}

func TestProcStartTicks(t *testing.T) {
	self, err := procStartTicks(os.Getpid())
	if err != nil || self == 0 {
		t.Fatalf("own start time: %d, %v", self, err)
	}
	cmd := exec.Command("sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	child, err := procStartTicks(cmd.Process.Pid)
	if err != nil || child < self {
		t.Errorf("a child's start time %d (%v), want at least its parent's %d", child, err, self)
	}
	if _, err := procStartTicks(1 << 30); !os.IsNotExist(err) {
		t.Errorf("no such process: %v, want not exist", err)
	}
	if bootID() == "" {
		t.Error("no boot id")
	}
}

func TestSubmitRecordsTheRunnersStartTime(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	j := submit(t, a, "o1", "test", "sleep", map[string]any{"seconds": 1})
	ticks, err := procStartTicks(j.PID)
	if err != nil || j.StartTicks != ticks || j.BootID != bootID() || j.BootID == "" {
		t.Errorf("job records start %d boot %q; the runner started at %d (%v) in boot %q", j.StartTicks, j.BootID, ticks, err, bootID())
	}
	if !a.isRunner(j) || !a.ownsGroup(j) {
		t.Errorf("isRunner %v, ownsGroup %v for a live runner; want both", a.isRunner(j), a.ownsGroup(j))
	}
	waitState(t, a, j.ID, isFinished)
}

// An async job cannot signal the minion daemon that runs it: the runner
// knows the daemon's pid and the process module refuses it.
func TestAsyncJobCannotKillTheDaemon(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	j := submit(t, a, "o1", "process", "kill", map[string]any{"pid": os.Getpid(), "signal": 0})
	st := waitState(t, a, j.ID, isFinished)
	if st.OK || st.Error == nil || st.Error.Kind != status.KindBadArgs || !strings.Contains(st.Error.Message, "is the minion itself") {
		t.Errorf("process.kill of the daemon from an async job: ok=%v %+v, want refused", st.OK, st.Error)
	}
}
