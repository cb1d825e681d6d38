//go:build linux

package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Async jobs run in processes no test starts itself: the overlord's
// drivers ('overlord ... job drive JOB', in a session of their own) and
// the minions' runners ('minion run-job SPOOLDIR', in a session and
// process group of their own, with the job's command below them). Their
// parent is init, so they are found by their command lines in /proc,
// never by name: a test's processes are those whose command line holds
// the test's own directory (the overlord's state directory, a minion's
// spool), which no other test shares.

// procInfo is a process as /proc shows it.
type procInfo struct {
	pid, pgid int
	cmdline   string // arguments joined by spaces
	cwd       string // its working directory, if it could be read
}

// procs returns the live processes (other than this one) for which match
// holds.
func procs(match func(procInfo) bool) []procInfo {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var found []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 { // gone, or a zombie
			continue
		}
		p := procInfo{pid: pid, cmdline: string(bytes.TrimRight(bytes.ReplaceAll(raw, []byte{0}, []byte{' '}), " "))}
		p.cwd, _ = os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if !match(p) {
			continue
		}
		if p.pgid, err = syscall.Getpgid(pid); err != nil {
			continue
		}
		found = append(found, p)
	}
	return found
}

// findProcs returns the live processes whose command line contains every
// one of substrs.
func findProcs(substrs ...string) []procInfo {
	return procs(func(p procInfo) bool {
		for _, s := range substrs {
			if !strings.Contains(p.cmdline, s) {
				return false
			}
		}
		return true
	})
}

// ownedProcs returns the live processes that belong to a test's
// directory dir: their command line names it (drivers, runners, commands
// given a path under it), or they run in it (a command of an async job
// runs in its spool directory, a synchronous one in the minion's state
// directory; so do whatever they started, even once their runner is
// gone).
//
// The directory must be named whole: script "async" works in .../script-async,
// which is not .../script-async_cancel_prefix, whose processes it must not
// kill (it did, under load: a minion of the other script SIGKILLed).
func ownedProcs(dir string) []procInfo {
	return procs(func(p procInfo) bool {
		return namesPath(p.cmdline, dir) || p.cwd == dir || strings.HasPrefix(p.cwd, dir+string(filepath.Separator))
	})
}

// namesPath reports whether cmdline names dir, or a path under it: dir
// followed by a separator, a space, or the end.
func namesPath(cmdline, dir string) bool {
	for rest := cmdline; ; {
		i := strings.Index(rest, dir)
		if i < 0 {
			return false
		}
		rest = rest[i+len(dir):]
		if rest == "" || rest[0] == filepath.Separator || rest[0] == ' ' {
			return true
		}
	}
}

// drivers returns the processes driving an async job of the overlord
// state directory stateDir.
func drivers(stateDir, jobID string) []procInfo {
	return findProcs(stateDir+" ", " job drive ", jobID)
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitGone waits up to timeout until none of pids is alive.
func waitGone(timeout time.Duration, pids ...int) error {
	deadline := time.Now().Add(timeout)
	for {
		var left []int
		for _, pid := range pids {
			if alive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pids %v still there after %s", left, timeout)
		}
		time.Sleep(pollEvery)
	}
}

// killDetached kills the processes of ownedProcs(dir): a group leader
// (a driver, a runner) with its whole process group, so the commands a
// runner started go too; any other process alone. It returns what it
// killed.
func killDetached(dir string) ([]procInfo, error) {
	var killed []procInfo
	var pids []int
	for _, p := range ownedProcs(dir) {
		target := p.pid
		if p.pgid == p.pid && p.pgid != syscall.Getpgrp() {
			target = -p.pgid
		}
		if err := syscall.Kill(target, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return killed, fmt.Errorf("kill %d (%s): %v", target, p.cmdline, err)
		}
		killed = append(killed, p)
		pids = append(pids, p.pid)
	}
	return killed, waitGone(stopTimeout, pids...)
}

// raceReports returns the logs of a fleet's detached processes (drivers'
// logs, runners' logs) that hold a report of the race detector: those
// processes exit with no one to see their status.
func raceReports(f *fleet) []string {
	logs, _ := filepath.Glob(filepath.Join(f.stateDir, "drivers", "*.log"))
	runners, _ := filepath.Glob(filepath.Join(f.dir, "*", "spool", "*", "runner.log"))
	var bad []string
	for _, l := range append(logs, runners...) {
		data, err := os.ReadFile(l)
		if err == nil && bytes.Contains(data, []byte("WARNING: DATA RACE")) {
			bad = append(bad, l)
		}
	}
	return bad
}

// waitLines waits until file has at least n lines and returns them.
func waitLines(t *testing.T, file string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		data, _ := os.ReadFile(file)
		lines := nonEmptyLines(string(data))
		if len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d lines after %s, want %d:\n%s", file, len(lines), readyTimeout, n, data)
		}
		time.Sleep(pollEvery)
	}
}

// namesPath takes a directory whole, never as the prefix of another's name.
func TestNamesPath(t *testing.T) {
	for _, c := range []struct {
		cmdline, dir string
		want         bool
	}{
		{"minion --state-dir /w/script-async/web1 serve", "/w/script-async", true},
		{"minion --state-dir /w/script-async_cancel_prefix/web1 serve", "/w/script-async", false},
		{"sh -c sleep 1 /w/script-async", "/w/script-async", true},
		{"x /w/script-asyncx /w/script-async/y", "/w/script-async", true},
		{"x /w/script-asyncx", "/w/script-async", false},
	} {
		if got := namesPath(c.cmdline, c.dir); got != c.want {
			t.Errorf("namesPath(%q, %q) = %v, want %v", c.cmdline, c.dir, got, c.want)
		}
	}
}
