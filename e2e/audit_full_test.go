//go:build linux

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// setFileSizeLimit sets the RLIMIT_FSIZE of the running process pid (as
// prlimit --pid PID --fsize=N does): past it, the process's writes fail
// with EFBIG, as they would with ENOSPC on a full disk.
func setFileSizeLimit(t *testing.T, pid int, limit uint64) {
	t.Helper()
	lim := syscall.Rlimit{Cur: limit, Max: ^uint64(0)}
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), uintptr(syscall.RLIMIT_FSIZE), uintptr(unsafe.Pointer(&lim)), 0, 0, 0); errno != 0 {
		t.Fatalf("prlimit(%d, RLIMIT_FSIZE, %d): %v", pid, limit, errno)
	}
}

// TestAuditFullRefusesCalls: the reviewer's full disk, on a real minion.
// While the daemon cannot add a line to its audit log (its file size
// limit set just past the log's size), every call is refused with kind
// internal and runs nothing; once it can again, calls run, every line of
// audit.log parses and 'minion audit' shows each call.
func TestAuditFullRefusesCalls(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1")
	web1 := mustMinion(t, f, "web1")
	if _, err := f.overlord("call", "web1", "test.ping"); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(web1.dir, "audit.log")
	fi, err := os.Stat(logPath)
	if err != nil {
		t.Fatal(err)
	}
	setFileSizeLimit(t, web1.p.Pid(), uint64(fi.Size())+100)

	marker := func(i int) string { return filepath.Join(f.dir, fmt.Sprintf("ran-%d", i)) }
	refused, ran := 0, 0
	for i := range 10 {
		cmd, stdout, stderr := overlordCmd(f, "call", "web1", "command.run", "touch "+marker(i), "-o", "json")
		code := exitCode(t, cmd)
		var j jobView
		if err := json.Unmarshal(stdout.Bytes(), &j); err != nil {
			t.Fatalf("call %d: exit %d, %v\n%s%s", i, code, err, stdout, stderr)
		}
		e := j.Minions["web1"]
		if code == 1 && e.kind() == "internal" && strings.Contains(e.Error.Message, "audit log") {
			refused++
		} else {
			t.Errorf("call %d while the audit log is full: exit %d, %+v; want exit 1, kind internal naming the audit log", i, code, e)
		}
		if _, err := os.Stat(marker(i)); err == nil {
			ran++
			t.Errorf("call %d ran while it could not be audited", i)
		}
	}
	if web1.p.exited() {
		t.Fatalf("the minion died: %s\n%s", web1.p.state(), web1.p.logTail(20))
	}

	setFileSizeLimit(t, web1.p.Pid(), ^uint64(0))
	for i := 10; i < 13; i++ {
		if _, err := f.overlord("call", "web1", "command.run", "touch "+marker(i)); err != nil {
			t.Fatalf("call %d with room again: %v", i, err)
		}
		if _, err := os.Stat(marker(i)); err != nil {
			t.Errorf("call %d did not run: %v", i, err)
		}
	}

	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for n, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if !json.Valid(line) {
			t.Errorf("audit.log line %d does not parse: %q", n+1, line)
		}
	}
	out, err := f.run("minion", "--state-dir", web1.dir, "audit", "--limit", "0", "--json")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	runs, gap := 0, 0
	for _, l := range lines {
		if strings.Contains(l, `"call":"command.run"`) && strings.Contains(l, `"outcome":"ok"`) {
			runs++
		}
		if strings.Contains(l, `"rpc":"audit"`) && strings.Contains(l, `"message":"10 entries could not be written`) {
			gap++
		}
	}
	// test.ping, the line saying the 10 refusals could not be recorded,
	// the 3 calls after.
	if len(lines) != 5 || runs != 3 || gap != 1 {
		t.Errorf("minion audit: %d entries, %d command.run ok, %d saying 10 were lost; want 5, 3, 1:\n%s", len(lines), runs, gap, out)
	}
	t.Logf("while full: %d of 10 calls refused, %d ran; after: 3 of 3 ran; audit.log %d bytes, %d entries", refused, ran, len(data), len(lines))
}
