package minion

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// runnerDiskFullEnv makes the test runner's output file fail with
// ENOSPC after that many bytes, as a full disk would.
const runnerDiskFullEnv = "OVERLORD_TEST_RUNNER_DISK_FULL"

type diskFullWriter struct {
	w    io.Writer
	room int
}

func (d *diskFullWriter) Write(p []byte) (int, error) {
	if len(p) > d.room {
		n, _ := d.w.Write(p[:d.room])
		d.room = 0
		return n, &os.PathError{Op: "write", Path: "output", Err: syscall.ENOSPC}
	}
	d.room -= len(p)
	return d.w.Write(p)
}

// agreeOnFullDisk checks that the daemon (Minion.Status) and the spool
// (minion job list and show) say the same of job id: FINISHED, not ok,
// kind internal, naming the full disk.
func agreeOnFullDisk(t *testing.T, a *asyncJobs, stateDir, id string) {
	t.Helper()
	st := waitState(t, a, id, isFinished)
	if st.OK || st.Error == nil || st.Error.Kind != status.KindInternal || !strings.Contains(st.Error.Message, "no space left on device") {
		t.Errorf("Minion.Status: ok %v error %+v; want kind internal, \"no space left on device\"", st.OK, st.Error)
	}
	list, err := LocalJobs(stateDir, 0)
	if err != nil || len(list) != 1 {
		t.Fatalf("minion job list: %v, %v", list, err)
	}
	show, err := ReadLocalJob(stateDir, id)
	if err != nil {
		t.Fatal(err)
	}
	for name, lj := range map[string]LocalJob{"minion job list": list[0], "minion job show": show} {
		if lj.State != status.Finished || lj.OK || lj.Error == nil || *lj.Error != *st.Error {
			t.Errorf("%s: %s ok %v error %+v; want FINISHED with Minion.Status's error %+v", name, lj.State, lj.OK, lj.Error, st.Error)
		}
	}
}

// TestAsyncOutputDiskFull: the runner's output file fails as on a full
// disk. The job ends saying so, and both views agree.
func TestAsyncOutputDiskFull(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(runnerDiskFullEnv, "1000")
	a := newAsync(t, dir)
	defer a.Close()
	j := submit(t, a, "o1", "command", "run", map[string]any{"cmd": "head -c 100000 /dev/zero | tr '\\0' x"})
	agreeOnFullDisk(t, a, dir, j.ID)
}

// TestAsyncSpoolOnFullTmpfs fills a real file system: the spool is a
// 1 MiB tmpfs and the job writes 4 MiB. The job ends saying the disk is
// full (the result is written over the space reserved for it), and both
// views agree.
func TestAsyncSpoolOnFullTmpfs(t *testing.T) {
	dir := t.TempDir()
	spool := filepath.Join(dir, "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", spool).CombinedOutput(); err != nil {
		t.Fatalf("this test needs to mount a 1 MiB tmpfs (as root): mount: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", spool).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", spool, err, out)
		}
	})
	a := newAsync(t, dir)
	defer a.Close()
	j := submit(t, a, "o1", "command", "run", map[string]any{"cmd": "head -c 4000000 /dev/zero | tr '\\0' x", "max_output": 100})
	defer waitRunnerGone(t, a.dir(j.ID)) // before the unmount
	agreeOnFullDisk(t, a, dir, j.ID)
	if fi, err := os.Stat(filepath.Join(spool, j.ID, outputFile)); err != nil || fi.Size() < 900_000 {
		t.Errorf("output %v %v: want the disk filled", fi, err)
	}
	// The disk is full now: a new job cannot even be spooled. It is
	// refused saying so, and leaves no entry that looks RUNNING.
	k, created, err := a.submit("tester", &rpc.SubmitParams{OriginJobID: "o2", Module: "test", Method: "ping"})
	if err != nil || !created || k.State != status.Finished || k.Error == nil || k.Error.Kind != status.KindInternal ||
		!strings.Contains(k.Error.Message, "no space left on device") {
		t.Errorf("submit on a full disk: %+v created %v err %v; want FINISHED, kind internal, no space left on device", k.Error, created, err)
	}
	if list, err := LocalJobs(dir, 0); err != nil || len(list) > 2 || len(list) == 2 && list[0].State != status.Finished {
		t.Errorf("minion job list after a refused job: %+v, %v", list, err)
	}
}

// TestAsyncUnreadableResult: a result.json that does not decode is
// reported as unreadable, not missing, and both views agree.
func TestAsyncUnreadableResult(t *testing.T) {
	dir := t.TempDir()
	a := newAsync(t, dir)
	defer a.Close()
	// A job the sweeper would settle, whose runner left a damaged result.
	j, _, err := a.store.submit("tester", "o1", nil, func(id string) Job {
		return Job{ID: id, OriginJobID: "o1", Caller: "tester", Module: "test", Method: "ping", State: status.Running, CreatedAt: time.Now().UTC()}
	})
	if err != nil {
		t.Fatal(err)
	}
	jdir := filepath.Join(dir, "spool", j.ID)
	os.MkdirAll(jdir, 0o700)
	sp, _ := json.Marshal(spec{JobID: j.ID, OriginJobID: "o1", Caller: "tester", Module: "test", Method: "ping", CreatedAt: j.CreatedAt})
	if err := writeFileAtomic(filepath.Join(jdir, specFile), sp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(jdir, resultFile), []byte(`{"ok": tru`), 0o600); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, a, j.ID, isFinished)
	if st.Error == nil || st.Error.Kind != status.KindInternal || !strings.Contains(st.Error.Message, "result.json is unreadable") {
		t.Errorf("Minion.Status: %+v; want kind internal, result.json is unreadable", st.Error)
	}
	show, err := ReadLocalJob(dir, j.ID)
	if err != nil || show.State != status.Finished || show.Error == nil || show.Error.Message != st.Error.Message {
		t.Errorf("minion job show: %s %+v %v; want FINISHED with %+v", show.State, show.Error, err, st.Error)
	}
}

// TestSaveResultOverItsReserve: when result.json cannot be written, the
// result goes over the reserve: whole if it fits, else an outcome saying
// why it could not be saved, with the job's own error.
func TestSaveResultOverItsReserve(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    outcome
		want string
	}{
		{"small", outcome{OK: true, Result: json.RawMessage(`{"pong":true}`)}, `"pong":true`},
		{"large", outcome{Error: status.Errorf(status.KindModuleError, "exit 1"), Result: json.RawMessage(fmt.Sprintf("%q", bytes.Repeat([]byte("x"), 3*resultReserve)))},
			"could not be saved"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := createReserve(dir); err != nil {
				t.Fatal(err)
			}
			// result.json cannot be written: the disk is full.
			full := func(path string, _ []byte) error {
				return &os.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}
			}
			data, _ := json.Marshal(tc.o)
			if err := saveResultWith(dir, data, full); err != nil {
				t.Fatal(err)
			}
			o, err := readOutcome(dir)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(o)
			if !strings.Contains(string(got), tc.want) {
				t.Errorf("saved %s; want %s in it", got, tc.want)
			}
			if tc.name == "large" && (o.OK || o.Error.Kind != status.KindInternal || !strings.Contains(o.Error.Message, "module_error: exit 1")) {
				t.Errorf("saved %+v; want kind internal with the job's own error", o.Error)
			}
			if _, err := os.Stat(filepath.Join(dir, reserveFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("reserve left behind: %v", err)
			}
		})
	}
}
