package process_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/process"
	"github.com/overlordhq/overlord/status"
)

func call(t *testing.T, m process.Module, method string, named map[string]any, positional ...any) (any, *status.Error) {
	t.Helper()
	r := modules.NewRegistry()
	if err := r.Add(m); err != nil {
		t.Fatal(err)
	}
	got, err := r.Call(context.Background(), "process", method, named, positional)
	if err == nil {
		return got, nil
	}
	var se *status.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a *status.Error", err, err)
	}
	return got, se
}

func mustCall[T any](t *testing.T, m process.Module, method string, named map[string]any, positional ...any) T {
	t.Helper()
	got, err := call(t, m, method, named, positional...)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	v, ok := got.(T)
	if !ok {
		t.Fatalf("%s returned %T, want %T", method, got, v)
	}
	return v
}

// fakeProc is a process for a fake /proc.
type fakeProc struct {
	pid, ppid, uid int
	comm, state    string
	argv           []string
	utime, stime   int
	rssPages       int
}

// writeProc writes procs as a procfs under a new temporary directory.
func writeProc(t *testing.T, procs ...fakeProc) string {
	t.Helper()
	root := t.TempDir()
	for _, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(p.pid))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := fmt.Sprintf("%d (%s) %s %d %d %d 0 -1 4194560 100 0 0 0 %d %d 0 0 20 0 1 0 5000 10000000 %d 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n",
			p.pid, p.comm, p.state, p.ppid, p.pid, p.pid, p.utime, p.stime, p.rssPages)
		status := fmt.Sprintf("Name:\t%s\nUmask:\t0022\nState:\t%s (x)\nTgid:\t%d\nPid:\t%d\nPPid:\t%d\nUid:\t%d\t%d\t%d\t%d\nGid:\t0\t0\t0\t0\n",
			p.comm, p.state, p.pid, p.pid, p.ppid, p.uid, p.uid+1, p.uid+1, p.uid+1)
		var cmdline string
		for _, a := range p.argv {
			cmdline += a + "\x00"
		}
		for name, data := range map[string]string{"stat": stat, "status": status, "cmdline": cmdline} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Entries that are not processes.
	for _, name := range []string{"self", "sys", "cpuinfo"} {
		if err := os.Mkdir(filepath.Join(root, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// recorder is a fake Signal that records what it is asked to send.
type recorder struct {
	mu   sync.Mutex
	sent map[int]syscall.Signal
	errs map[int]error // what signalling a pid returns
}

func (r *recorder) signal(pid int, sig syscall.Signal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.errs[pid]; err != nil {
		return err
	}
	if r.sent == nil {
		r.sent = map[int]syscall.Signal{}
	}
	r.sent[pid] = sig
	return nil
}

func (r *recorder) pids() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for pid := range r.sent {
		out = append(out, pid)
	}
	slices.Sort(out)
	return out
}

// The fake host: init, a shell that started the minion (pid 500), the
// minion (600), an nginx master and worker, a kernel thread and a process
// with a hostile comm.
var fakeHost = []fakeProc{
	{pid: 1, ppid: 0, comm: "systemd", state: "S", argv: []string{"/sbin/init", "splash"}, utime: 150, stime: 50, rssPages: 3},
	{pid: 2, ppid: 0, comm: "kthreadd", state: "S"},
	{pid: 500, ppid: 1, uid: 1000, comm: "bash", state: "S", argv: []string{"-bash"}},
	{pid: 600, ppid: 500, comm: "minion", state: "S", argv: []string{"/usr/bin/minion", "serve", "--nginx-compat"}},
	{pid: 700, ppid: 1, comm: "nginx", state: "S", argv: []string{"nginx: master process /usr/sbin/nginx"}, utime: 12, stime: 13, rssPages: 10},
	{pid: 701, ppid: 700, uid: 33, comm: "nginx", state: "R", argv: []string{"nginx: worker process"}},
	{pid: 800, ppid: 1, uid: 4242424, comm: "evil) R 1 (x", state: "Z", argv: []string{"/opt/evil", "a b", "c"}},
}

func TestList(t *testing.T) {
	m := process.Module{ProcRoot: writeProc(t, fakeHost...), PID: 600}
	page := int64(os.Getpagesize())
	root, err := user.LookupId("0")
	if err != nil {
		t.Fatal(err)
	}
	all := mustCall[process.List](t, m, "list", nil)
	if all.Truncated || len(all.Processes) != len(fakeHost) {
		t.Fatalf("got %d processes, truncated %v; want %d", len(all.Processes), all.Truncated, len(fakeHost))
	}
	want := map[int]process.Process{
		1:   {PID: 1, PPID: 0, UID: 0, User: root.Username, Name: "systemd", Cmdline: "/sbin/init splash", State: "S", RSSBytes: 3 * page, CPUSeconds: 2},
		2:   {PID: 2, PPID: 0, UID: 0, User: root.Username, Name: "kthreadd", Cmdline: "[kthreadd]", State: "S"},
		700: {PID: 700, PPID: 1, UID: 0, User: root.Username, Name: "nginx", Cmdline: "nginx: master process /usr/sbin/nginx", State: "S", RSSBytes: 10 * page, CPUSeconds: 0.25},
		800: {PID: 800, PPID: 1, UID: 4242424, User: "4242424", Name: "evil) R 1 (x", Cmdline: "/opt/evil a b c", State: "Z"},
	}
	for i, p := range all.Processes {
		if i > 0 && all.Processes[i-1].PID >= p.PID {
			t.Errorf("not sorted by pid: %d after %d", p.PID, all.Processes[i-1].PID)
		}
		if w, ok := want[p.PID]; ok && p != w {
			t.Errorf("process %d:\n got %+v\nwant %+v", p.PID, p, w)
		}
	}

	tests := []struct {
		name      string
		named     map[string]any
		pids      []int
		truncated bool
	}{
		{name: "pattern", named: map[string]any{"pattern": "^nginx: "}, pids: []int{700, 701}},
		{name: "pattern anywhere in the line", named: map[string]any{"pattern": "nginx"}, pids: []int{600, 700, 701}},
		{name: "kernel thread by its bracketed name", named: map[string]any{"pattern": `^\[kthreadd\]$`}, pids: []int{2}},
		{name: "no match", named: map[string]any{"pattern": "postgres"}, pids: []int{}},
		{name: "max_processes", named: map[string]any{"max_processes": 2.0}, pids: []int{1, 2}, truncated: true},
		{name: "max_processes with a pattern", named: map[string]any{"pattern": "nginx", "max_processes": 2.0}, pids: []int{600, 700}, truncated: true},
		{name: "max_processes exactly", named: map[string]any{"pattern": "nginx", "max_processes": 3.0}, pids: []int{600, 700, 701}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := mustCall[process.List](t, m, "list", tt.named)
			pids := []int{}
			for _, p := range l.Processes {
				pids = append(pids, p.PID)
			}
			if !slices.Equal(pids, tt.pids) || l.Truncated != tt.truncated {
				t.Errorf("pids %v truncated %v; want %v %v", pids, l.Truncated, tt.pids, tt.truncated)
			}
		})
	}
}

func TestKill(t *testing.T) {
	tests := []struct {
		name   string
		args   []any
		signal syscall.Signal
		result string
	}{
		{name: "TERM by default", args: []any{700.0}, signal: syscall.SIGTERM, result: "TERM"},
		{name: "by name", args: []any{700.0, "KILL"}, signal: syscall.SIGKILL, result: "KILL"},
		{name: "with SIG and in lower case", args: []any{700.0, "sighup"}, signal: syscall.SIGHUP, result: "HUP"},
		{name: "USR1", args: []any{700.0, "USR1"}, signal: syscall.SIGUSR1, result: "USR1"},
		{name: "by number", args: []any{700.0, 9.0}, signal: syscall.SIGKILL, result: "KILL"},
		{name: "number in a string", args: []any{700.0, "2"}, signal: syscall.SIGINT, result: "INT"},
		{name: "real-time signal", args: []any{700.0, 40.0}, signal: 40, result: "40"},
		{name: "zero checks", args: []any{700.0, 0.0}, signal: 0, result: "0"},
		{name: "parent of the minion", args: []any{500.0}, signal: syscall.SIGTERM, result: "TERM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			m := process.Module{ProcRoot: writeProc(t, fakeHost...), PID: 600, Signal: rec.signal}
			k := mustCall[process.Kill](t, m, "kill", nil, tt.args...)
			pid := int(tt.args[0].(float64))
			if k.PID != pid || k.Signal != tt.result {
				t.Errorf("result %+v, want pid %d signal %s", k, pid, tt.result)
			}
			if got, ok := rec.sent[pid]; !ok || got != tt.signal || len(rec.sent) != 1 {
				t.Errorf("sent %v, want only %d to %d", rec.sent, tt.signal, pid)
			}
		})
	}
}

func TestKillFailures(t *testing.T) {
	tests := []struct {
		name  string
		named map[string]any
		args  []any
		errs  map[int]error
		kind  status.Kind
		msg   string
	}{
		{name: "pid 1", args: []any{1.0}, kind: status.KindBadArgs, msg: "refusing to signal pid 1"},
		{name: "pid 0", args: []any{0.0}, kind: status.KindBadArgs, msg: "refusing to signal pid 0"},
		{name: "process group", args: []any{-700.0}, kind: status.KindBadArgs, msg: "refusing to signal pid -700"},
		{name: "the minion", args: []any{600.0}, kind: status.KindBadArgs, msg: "600 is the minion itself"},
		{name: "no pid", kind: status.KindBadArgs, msg: "missing required parameter pid"},
		{name: "fractional pid", args: []any{7.5}, kind: status.KindBadArgs, msg: "parameter pid: want int"},
		{name: "unknown signal", args: []any{700.0, "BOOM"}, kind: status.KindBadArgs, msg: `parameter signal: want a name such as TERM`},
		{name: "signal too large", args: []any{700.0, 65.0}, kind: status.KindBadArgs, msg: "got 65"},
		{name: "negative signal", args: []any{700.0, -1.0}, kind: status.KindBadArgs, msg: "got -1"},
		{name: "signal of a wrong type", args: []any{700.0, true}, kind: status.KindBadArgs, msg: "parameter signal: want string|int"},
		{name: "no such process", args: []any{700.0}, errs: map[int]error{700: syscall.ESRCH}, kind: status.KindModuleError, msg: "no process 700"},
		{name: "not permitted", args: []any{700.0}, errs: map[int]error{700: syscall.EPERM}, kind: status.KindModuleError, msg: "not permitted to send TERM to process 700"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{errs: tt.errs}
			m := process.Module{ProcRoot: writeProc(t, fakeHost...), PID: 600, Signal: rec.signal}
			_, err := call(t, m, "kill", tt.named, tt.args...)
			if err == nil || err.Kind != tt.kind || !strings.Contains(err.Message, tt.msg) {
				t.Errorf("error %v, want %s saying %q", err, tt.kind, tt.msg)
			}
			if len(rec.sent) > 0 {
				t.Errorf("signals sent: %v", rec.sent)
			}
		})
	}
}

func TestPKill(t *testing.T) {
	tests := []struct {
		name    string
		args    []any
		errs    map[int]error
		killed  []int
		skipped []int
		failed  []int
		signal  syscall.Signal
		errMsg  string
	}{
		{name: "workers and master", args: []any{"^nginx: "}, killed: []int{700, 701}, signal: syscall.SIGTERM},
		{name: "never the minion or its ancestors", args: []any{"nginx|bash|init"}, killed: []int{700, 701}, skipped: []int{1, 500, 600}, signal: syscall.SIGTERM},
		{name: "everything", args: []any{"."}, killed: []int{2, 700, 701, 800}, skipped: []int{1, 500, 600}, signal: syscall.SIGTERM},
		{name: "with a signal", args: []any{"worker", "HUP"}, killed: []int{701}, signal: syscall.SIGHUP},
		{name: "no match is not an error", args: []any{"postgres"}, killed: []int{}},
		{name: "a process that exited meanwhile", args: []any{"^nginx: "}, errs: map[int]error{701: syscall.ESRCH}, killed: []int{700}, signal: syscall.SIGTERM},
		{name: "a process we may not signal", args: []any{"^nginx: "}, errs: map[int]error{701: syscall.EPERM}, killed: []int{700}, failed: []int{701},
			signal: syscall.SIGTERM, errMsg: "could not signal 1 of 2 matching processes: not permitted to send TERM to process 701"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{errs: tt.errs}
			m := process.Module{ProcRoot: writeProc(t, fakeHost...), PID: 600, Signal: rec.signal}
			got, err := call(t, m, "pkill", nil, tt.args...)
			if tt.errMsg == "" && err != nil {
				t.Fatal(err)
			}
			if tt.errMsg != "" && (err == nil || err.Kind != status.KindModuleError || err.Message != tt.errMsg) {
				t.Errorf("error %v, want module_error %q", err, tt.errMsg)
			}
			res, ok := got.(process.PKill)
			if !ok {
				t.Fatalf("result %T", got)
			}
			var failed []int
			for _, f := range res.Failed {
				failed = append(failed, f.PID)
			}
			if !slices.Equal(res.Killed, tt.killed) || !slices.Equal(res.Skipped, tt.skipped) || !slices.Equal(failed, tt.failed) {
				t.Errorf("killed %v skipped %v failed %v; want %v %v %v", res.Killed, res.Skipped, failed, tt.killed, tt.skipped, tt.failed)
			}
			if sent := rec.pids(); !slices.Equal(sent, tt.killed) && !(len(sent) == 0 && len(tt.killed) == 0) {
				t.Errorf("signals went to %v, want %v", sent, tt.killed)
			}
			for pid, sig := range rec.sent {
				if sig != tt.signal {
					t.Errorf("pid %d got signal %d, want %d", pid, sig, tt.signal)
				}
			}
		})
	}
	for _, tt := range []struct {
		name string
		args []any
		msg  string
	}{
		{"no pattern", nil, "missing required parameter pattern"},
		{"empty pattern", []any{""}, "parameter pattern: must not be empty"},
		{"bad pattern", []any{"("}, "parameter pattern: error parsing regexp"},
		{"bad signal", []any{"nginx", "NOPE"}, "parameter signal"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			m := process.Module{ProcRoot: writeProc(t, fakeHost...), PID: 600, Signal: rec.signal}
			_, err := call(t, m, "pkill", nil, tt.args...)
			if err == nil || err.Kind != status.KindBadArgs || !strings.Contains(err.Message, tt.msg) {
				t.Errorf("error %v, want bad_args saying %q", err, tt.msg)
			}
			if len(rec.sent) > 0 {
				t.Errorf("signals sent: %v", rec.sent)
			}
		})
	}
}

// child is a real child process.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when Wait returns
	err    error         // what Wait returned
}

// startSleep starts a real child process with a command line no other
// process has, and stops it when the test ends. It returns the child and
// a pattern matching only its command line.
func startSleep(t *testing.T) (*child, string) {
	t.Helper()
	secs := fmt.Sprintf("%d.%d", 3000+os.Getpid()%1000, time.Now().UnixNano()%1000000)
	c := &child{cmd: exec.Command("sleep", secs), exited: make(chan struct{})}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.exited
	})
	return c, "^sleep " + regexp.QuoteMeta(secs) + "$"
}

// waitSignal waits for the child to end and checks that sig ended it.
func waitSignal(t *testing.T, c *child, sig syscall.Signal) {
	t.Helper()
	select {
	case <-c.exited:
		var exitErr *exec.ExitError
		if !errors.As(c.err, &exitErr) {
			t.Fatalf("child ended with %v", c.err)
		}
		ws := exitErr.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != sig {
			t.Errorf("child ended with %v, want killed by %v", exitErr, sig)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("child still running 10s after the signal")
	}
}

// TestRealProcess lists, kills and pkills real child processes through the
// real /proc.
func TestRealProcess(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	m := process.Module{}

	c, pattern := startSleep(t)
	// Wait for the exec: until then the child's command line is ours.
	var l process.List
	for deadline := time.Now().Add(5 * time.Second); ; {
		l = mustCall[process.List](t, m, "list", map[string]any{"pattern": pattern})
		if len(l.Processes) == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(l.Processes) != 1 {
		t.Fatalf("list %s found %+v, want the child", pattern, l.Processes)
	}
	p := l.Processes[0]
	if p.PID != c.cmd.Process.Pid || p.PPID != os.Getpid() || p.Name != "sleep" || strconv.Itoa(p.UID) != me.Uid || p.User != me.Username || p.RSSBytes <= 0 {
		t.Errorf("child listed as %+v; want pid %d ppid %d user %s", p, c.cmd.Process.Pid, os.Getpid(), me.Username)
	}
	if p.State != "S" && p.State != "R" {
		t.Errorf("child state %q", p.State)
	}

	// pkill finds and signals it.
	res := mustCall[process.PKill](t, m, "pkill", nil, pattern, "USR1")
	if !slices.Equal(res.Killed, []int{c.cmd.Process.Pid}) || len(res.Skipped) > 0 {
		t.Errorf("pkill %+v, want only the child %d killed", res, c.cmd.Process.Pid)
	}
	waitSignal(t, c, syscall.SIGUSR1)

	// kill by pid.
	c2, _ := startSleep(t)
	k := mustCall[process.Kill](t, m, "kill", nil, float64(c2.cmd.Process.Pid), "KILL")
	if k.PID != c2.cmd.Process.Pid || k.Signal != "KILL" {
		t.Errorf("kill %+v", k)
	}
	waitSignal(t, c2, syscall.SIGKILL)

	// The test binary is the minion here: kill refuses it.
	if _, err := call(t, m, "kill", nil, float64(os.Getpid())); err == nil || err.Kind != status.KindBadArgs {
		t.Errorf("kill of the minion's own pid: %v, want bad_args", err)
	}
}

// pkill with a pattern matching the minion skips it and its ancestors on
// the real /proc. A recorder stands in for kill, so that a bug cannot take
// down the test.
func TestRealPKillSparesTheMinion(t *testing.T) {
	rec := &recorder{}
	m := process.Module{Signal: rec.signal}
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	res := mustCall[process.PKill](t, m, "pkill", nil, regexp.QuoteMeta(filepath.Base(exe)))
	if !slices.Contains(res.Skipped, os.Getpid()) {
		t.Errorf("skipped %v, want our own pid %d among them", res.Skipped, os.Getpid())
	}
	if slices.Contains(rec.pids(), os.Getpid()) || slices.Contains(rec.pids(), os.Getppid()) || slices.Contains(rec.pids(), 1) {
		t.Errorf("signalled %v: the minion (%d), its parent (%d) or init", rec.pids(), os.Getpid(), os.Getppid())
	}
}

func TestDocs(t *testing.T) {
	m := process.Module{}
	if m.Name() != "process" || m.Doc() == "" {
		t.Errorf("name %q doc %q", m.Name(), m.Doc())
	}
	for _, meth := range m.Methods() {
		if meth.Doc == "" || meth.Returns == "" || meth.Run == nil {
			t.Errorf("%s: doc %q returns %q", meth.Name, meth.Doc, meth.Returns)
		}
		for _, p := range meth.Params {
			if p.Doc == "" {
				t.Errorf("%s: parameter %s has no doc", meth.Name, p.Name)
			}
		}
	}
}

// In an async job's runner, the minion daemon is protected as well as
// the runner itself: kill refuses it, pkill skips it and its ancestors.
func TestRunnerProtectsTheDaemon(t *testing.T) {
	host := append(slices.Clone(fakeHost),
		fakeProc{pid: 900, ppid: 1, comm: "minion", state: "S", argv: []string{"/usr/bin/minion", "run-job", "/var/lib/minion/spool/j1"}})
	rec := &recorder{}
	m := process.Module{ProcRoot: writeProc(t, host...), PID: 900, Minion: 600, Signal: rec.signal}
	for _, pid := range []float64{600, 900} {
		if _, err := call(t, m, "kill", nil, pid); err == nil || err.Kind != status.KindBadArgs || !strings.Contains(err.Message, "is the minion itself") {
			t.Errorf("kill %v: %v, want refused", pid, err)
		}
	}
	got, err := call(t, m, "pkill", nil, "minion|bash|nginx")
	if err != nil {
		t.Fatal(err)
	}
	res := got.(process.PKill)
	if !slices.Equal(res.Killed, []int{700, 701}) || !slices.Equal(res.Skipped, []int{500, 600, 900}) {
		t.Errorf("killed %v skipped %v; want 700 701 killed, the daemon (600), its parent (500) and the runner (900) skipped", res.Killed, res.Skipped)
	}
	if len(rec.sent) != 2 {
		t.Errorf("signals sent: %v", rec.sent)
	}
}
