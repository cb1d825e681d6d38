package minion

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/overlordhq/overlord/internal/atomicfile"
	"github.com/overlordhq/overlord/status"
)

// A job's spool directory, <state-dir>/spool/<job-id>/, holds:
const (
	specFile   = "spec.json"   // what to run (written before the runner starts)
	outputFile = "output"      // stdout and stderr as they are produced
	pidFile    = "pid"         // the runner's pid (written by the runner)
	resultFile = "result.json" // the outcome (temporary name, synced, renamed)
	logFile    = "runner.log"  // the runner's own diagnostics
	// reserveFile holds disk space for the job's result, taken before
	// the runner starts: a job whose output fills the disk still leaves
	// a result saying so (see saveResult).
	reserveFile = "result.reserve"
	// lockFile is locked (flock) by the runner for its whole life: the
	// daemon creates and locks it before starting the runner, which
	// inherits the lock (runnerLockFD). Held means the runner is alive,
	// free means it is gone; the check cannot race the runner's start.
	lockFile = "runner.lock"
)

// runnerLockFD is the descriptor by which a runner inherits its lock.
const runnerLockFD = 3

// RunnerLockEnv names the variable by which the daemon tells a runner
// that it holds its lock on descriptor runnerLockFD.
const RunnerLockEnv = "OVERLORD_RUNNER_LOCK_FD"

// spec is what a runner runs.
type spec struct {
	JobID       string         `json:"job_id"`
	OriginJobID string         `json:"origin_job_id"`
	Caller      string         `json:"caller"`
	Module      string         `json:"module"`
	Method      string         `json:"method"`
	Args        map[string]any `json:"args,omitempty"`
	TimeoutMS   int64          `json:"timeout_ms,omitempty"`
	CreatedAt   time.Time      `json:"created_at"`
}

// outcome is what a runner leaves in result.json.
type outcome struct {
	OK         bool            `json:"ok"`
	Result     json.RawMessage `json:"result,omitempty"`
	Error      *status.Error   `json:"error,omitempty"`
	DurationMS int64           `json:"duration_ms"`
	FinishedAt time.Time       `json:"finished_at"`
}

// writeFileAtomic writes data to path as a spool file, mode 0600,
// through atomicfile: readers see the whole file or nothing, even across
// a crash.
func writeFileAtomic(path string, data []byte) error {
	return atomicfile.WriteFile(path, data, atomicfile.Options{Mode: 0o600})
}

// resultReserve is the size of reserveFile: room for an outcome that
// says what went wrong.
const resultReserve = 16 << 10

// errResultUnreadable wraps the error reading a result.json that exists
// but cannot be read or decoded.
var errResultUnreadable = errors.New("the job's result.json is unreadable")

// createReserve makes dir's reserveFile, its blocks written so that
// using it needs no more space.
func createReserve(dir string) error {
	return writeFileAtomic(filepath.Join(dir, reserveFile), bytes.Repeat([]byte{' '}, resultReserve))
}

// saveResult writes data as dir's result.json (see writeFileAtomic). If
// that fails (a full disk), the result is written over the reserve made
// for it instead, which needs no new space: data itself if it fits, else
// a shorter outcome saying why the result could not be saved. The
// reserve is removed either way.
func saveResult(dir string, data []byte) error {
	return saveResultWith(dir, data, writeFileAtomic)
}

// saveResultWith is saveResult writing result.json with write, which
// tests make fail.
func saveResultWith(dir string, data []byte, write func(path string, data []byte) error) error {
	path := filepath.Join(dir, resultFile)
	reserve := filepath.Join(dir, reserveFile)
	err := write(path, data)
	if err == nil {
		os.Remove(reserve)
		return nil
	}
	if len(data) > resultReserve {
		data = briefOutcome(data, err)
	}
	if rErr := overwriteReserve(reserve, path, data); rErr != nil {
		return fmt.Errorf("save the job's result: %w (and over its reserve: %v)", err, rErr)
	}
	return nil
}

// briefOutcome is a short outcome for one (data) that could not be saved
// for err: not ok, kind internal, with the job's own error, if any, cut
// short.
func briefOutcome(data []byte, err error) []byte {
	var o outcome
	_ = json.Unmarshal(data, &o)
	msg := fmt.Sprintf("the job's result (%d bytes) could not be saved: %v", len(data), err)
	if o.Error != nil {
		own := o.Error.Message
		if len(own) > 2048 {
			own = own[:2048] + "..."
		}
		msg += fmt.Sprintf("; the job's own error: %s: %s", o.Error.Kind, own)
	}
	short, _ := json.Marshal(outcome{Error: status.Errorf(status.KindInternal, "%s", msg), DurationMS: o.DurationMS, FinishedAt: o.FinishedAt})
	return short
}

// overwriteReserve writes data over the reserve file in place, cuts it
// to size, syncs it and renames it to path: it needs no new space. The
// result is in place once renamed; syncing the directory is then only
// tried.
func overwriteReserve(reserve, path string, data []byte) error {
	err := atomicfile.WriteFile(path, data, atomicfile.Options{Mode: 0o600, Reuse: reserve})
	if errors.Is(err, atomicfile.ErrDirNotSynced) {
		return nil
	}
	return err
}

// readOutcome reads dir's result.json: an error wrapping fs.ErrNotExist
// if there is none yet, errResultUnreadable if it cannot be read or
// decoded.
func readOutcome(dir string) (*outcome, error) {
	data, err := os.ReadFile(filepath.Join(dir, resultFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errResultUnreadable, err)
	}
	var o outcome
	if err := json.Unmarshal(data, &o); err != nil {
		return nil, fmt.Errorf("%w: %v", errResultUnreadable, err)
	}
	return &o, nil
}

// spooledOutcome returns the outcome dir holds, if it holds one: the
// runner's result, or, for a result.json that cannot be read or decoded,
// an outcome saying so (kind internal).
func spooledOutcome(dir string) (outcome, bool) {
	o, err := readOutcome(dir)
	switch {
	case err == nil:
		return *o, true
	case errors.Is(err, errResultUnreadable):
		at := time.Now().UTC()
		if fi, sErr := os.Stat(filepath.Join(dir, resultFile)); sErr == nil {
			at = fi.ModTime().UTC()
		}
		return outcome{Error: status.Errorf(status.KindInternal, "%v", err), FinishedAt: at}, true
	}
	return outcome{}, false
}

// lostOutcome is the outcome of a job whose runner (pid) ended without
// leaving one, with the last line of its log if it wrote one.
func lostOutcome(dir string, pid int) outcome {
	msg := fmt.Sprintf("the job's runner (pid %d) ended without a result", pid)
	if last := lastLogLine(filepath.Join(dir, logFile)); last != "" {
		msg += ": " + last
	}
	return outcome{FinishedAt: time.Now().UTC(), Error: status.Errorf(status.KindLost, "%s", msg)}
}

// lastLogLine returns the last line of the runner's log, at most 512
// bytes of it.
func lastLogLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return ""
	}
	n := min(fi.Size(), 512)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, fi.Size()-n); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	buf = bytes.TrimRight(buf, "\n")
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		buf = buf[i+1:]
	}
	return strings.ToValidUTF8(string(buf), "?")
}

// readOutput returns up to max bytes of a job's output from offset, and
// the offset to read on from. It allocates no more than the output holds
// past offset, whatever max says.
func readOutput(dir string, offset int64, max int) (string, int64, error) {
	f, err := os.Open(filepath.Join(dir, outputFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", 0, nil
	}
	if err != nil {
		return "", offset, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", offset, err
	}
	n := min(int64(max), fi.Size()-offset)
	if n <= 0 {
		return "", offset, nil
	}
	buf := make([]byte, n)
	k, err := f.ReadAt(buf, offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", offset, err
	}
	return string(buf[:k]), offset + int64(k), nil
}

func outputSize(dir string) int64 {
	fi, err := os.Stat(filepath.Join(dir, outputFile))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// createRunnerLock makes dir's lock file, locked, under its final name
// only once locked: whoever opens it finds it held until the returned
// file, and every copy of its descriptor, is closed.
//
// The lock file is empty and means nothing after a crash (a crash ends
// its holder too), so it is not synced.
func createRunnerLock(dir string) (*os.File, error) {
	f, err := atomicfile.Create(filepath.Join(dir, lockFile), atomicfile.Options{Mode: 0o600, NoSync: true})
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Abort()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return f.CommitOpen()
}

// runnerLockHeld reports whether the runner of the job in dir holds its
// lock (it is alive); known is false when there is no lock file to tell
// (a job spooled by an older daemon).
func runnerLockHeld(dir string) (held, known bool) {
	f, err := os.Open(filepath.Join(dir, lockFile))
	if err != nil {
		return false, false
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if err == nil {
		// Free: whoever held it is gone. Closing f lets it go again.
		return false, true
	}
	// EWOULDBLOCK: held. Anything else (no flock here): say held, and
	// let the runner's result or the time limit settle the job.
	return true, true
}

// runnerAlive reports whether pid is alive and really is the runner of
// the job in dir (its command line names dir), so a reused pid is not
// mistaken for the runner.
func runnerAlive(pid int, dir string) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		// No procfs: trust the pid.
		return !errors.Is(err, fs.ErrNotExist) || !procfs()
	}
	if isZombie(pid) {
		return false
	}
	return bytes.Contains(cmdline, []byte(dir))
}

// procStartTicks returns when process pid started, in clock ticks after
// boot: field 22 of /proc/PID/stat. The error wraps fs.ErrNotExist when
// there is no such process.
func procStartTicks(pid int) (uint64, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The fields after the command name (in parentheses, and it may hold
	// spaces and parentheses itself) start with the third, the state.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := bytes.Fields(stat[i+1:])
	if len(fields) < 22-2 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	return strconv.ParseUint(string(fields[22-3]), 10, 64)
}

// bootID returns the kernel's identifier of this boot, "" if it cannot
// tell.
func bootID() string {
	data, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(data))
}

func procfs() bool {
	_, err := os.Stat("/proc/self/cmdline")
	return err == nil
}

func isZombie(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] == 'Z'
	}
	return false
}

// LocalJob is an async job as its spool directory shows it.
type LocalJob struct {
	Job
	Output string `json:"output,omitempty"`
}

// LocalJobs reads the jobs in the spool of stateDir, newest first, at most
// limit (0: all). It reads files only, so it works whether or not the
// daemon is running.
func LocalJobs(stateDir string, limit int) ([]LocalJob, error) {
	spool := filepath.Join(stateDir, "spool")
	ents, err := os.ReadDir(spool)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []LocalJob
	for i := len(ents) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		if !ents[i].IsDir() {
			continue
		}
		j, err := readLocalJob(filepath.Join(spool, ents[i].Name()), false)
		if err != nil {
			continue // a job being spooled or removed
		}
		out = append(out, j)
	}
	return out, nil
}

// ReadLocalJob reads one job, with its output, from the spool of stateDir.
func ReadLocalJob(stateDir, id string) (LocalJob, error) {
	if id == "" || filepath.Base(id) != id || id == "." || id == ".." {
		return LocalJob{}, fmt.Errorf("bad job ID %q", id)
	}
	j, err := readLocalJob(filepath.Join(stateDir, "spool", id), true)
	if errors.Is(err, fs.ErrNotExist) {
		return LocalJob{}, fmt.Errorf("no job %s in %s", id, filepath.Join(stateDir, "spool"))
	}
	return j, err
}

func readLocalJob(dir string, withOutput bool) (LocalJob, error) {
	data, err := os.ReadFile(filepath.Join(dir, specFile))
	if err != nil {
		return LocalJob{}, err
	}
	var sp spec
	if err := json.Unmarshal(data, &sp); err != nil {
		return LocalJob{}, fmt.Errorf("%s: %w", filepath.Join(dir, specFile), err)
	}
	j := LocalJob{Job: Job{
		ID: sp.JobID, OriginJobID: sp.OriginJobID, Caller: sp.Caller, Module: sp.Module, Method: sp.Method,
		Args: sp.Args, TimeoutMS: sp.TimeoutMS, CreatedAt: sp.CreatedAt, State: status.Running,
	}}
	if pid, err := os.ReadFile(filepath.Join(dir, pidFile)); err == nil {
		j.PID, _ = strconv.Atoi(string(bytes.TrimSpace(pid)))
	}
	o, ok := spooledOutcome(dir)
	if !ok {
		// No result: if the runner's lock says it is gone, the job is
		// lost, as the daemon records it (it may not have been able to
		// write that here, on a full disk).
		if held, known := runnerLockHeld(dir); known && !held {
			o, ok = lostOutcome(dir, j.PID), true
		}
	}
	switch {
	case ok:
		j.State, j.OK, j.Result, j.Error, j.DurationMS = status.Finished, o.OK, o.Result, o.Error, o.DurationMS
		at := o.FinishedAt
		j.FinishedAt = &at
	case outputSize(dir) > 0:
		j.State = status.Partial
	}
	if withOutput {
		j.Output, _, _ = readOutput(dir, 0, 1<<20)
	}
	return j, nil
}
