// Package process is the process module: list the processes of a minion's
// host from /proc, and signal them by pid or by a pattern on their command
// lines.
//
// kill and pkill never signal pid 1, the minion itself or (pkill) any of
// its ancestors, so a careless pattern cannot take the minion down. In an
// async job, "the minion itself" is both the job's runner and the minion
// daemon that started it (Module.Minion).
package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/status"
)

// Limits of list.
const (
	DefaultMaxProcesses = 10000  // list's default max_processes
	MaxProcesses        = 100000 // the largest max_processes list accepts
)

// Caps on what is read from each process's files.
const (
	maxStat    = 4 << 10
	maxStatus  = 16 << 10
	maxCmdline = 8 << 10
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/PID/stat. It
// is 100 on every Linux architecture.
const clockTicks = 100

// Module is the process module. Its zero value works on the real system;
// tests set the fields.
type Module struct {
	// ProcRoot is where procfs is mounted; "" means /proc.
	ProcRoot string
	// PID is the minion's own pid, which kill and pkill refuse to signal;
	// 0 means os.Getpid().
	PID int
	// Minion, in an async job's runner, is the pid of the minion daemon
	// that started the runner: kill refuses it too, and pkill it and its
	// ancestors. 0 in the daemon itself.
	Minion int
	// Signal sends sig to pid; nil means syscall.Kill.
	Signal func(pid int, sig syscall.Signal) error
}

var _ modules.Module = Module{}

// Name implements modules.Module.
func (Module) Name() string { return "process" }

// Doc implements modules.Module.
func (Module) Doc() string {
	return "List processes and signal them. Never signals pid 1, the minion or (pkill) the minion's ancestors."
}

var signalParam = modules.Param{Name: "signal", Type: "string|int", Default: "TERM",
	Doc: "a signal name (TERM, KILL, HUP, INT, USR1, ..., with or without SIG) or number; 0 only checks that the process may be signalled"}

// Methods implements modules.Module.
func (m Module) Methods() []*modules.Method {
	return []*modules.Method{
		{Name: "list", Doc: "List processes, sorted by pid, optionally only those whose command line matches a regular expression.",
			Returns: "{processes: [{pid, ppid, uid, user, name, cmdline, state, rss_bytes, cpu_seconds}], truncated}; " +
				"state is the kernel's letter (R running, S sleeping, D disk wait, Z zombie, T stopped, I idle)",
			Params: []modules.Param{
				{Name: "pattern", Type: modules.String, Doc: "regular expression (RE2) matched against the command line; a kernel thread's is [name]"},
				{Name: "max_processes", Type: modules.Int, Default: DefaultMaxProcesses, Doc: "return at most this many processes (at most 100000)"},
			},
			Positional: 1,
			Run:        m.list},
		{Name: "kill", Doc: "Send a signal to one process. Refuses pid 1 and below and the minion's own pid.",
			Returns: "{pid, signal}",
			Params: []modules.Param{
				{Name: "pid", Type: modules.Int, Required: true, Doc: "the process id"},
				signalParam,
			},
			Positional: 2,
			Run:        m.kill},
		{Name: "pkill", Doc: "Send a signal to every process whose command line matches a regular expression, " +
			"except pid 1, the minion and its ancestors. Matching nothing is not an error. " +
			"Failing to signal a process is a module_error that still carries the result.",
			Returns: "{signal, killed: [pids signalled], skipped: [pids that matched but are protected], failed: [{pid, error}]}",
			Params: []modules.Param{
				{Name: "pattern", Type: modules.String, Required: true, Doc: "regular expression (RE2) matched against the command line"},
				signalParam,
			},
			Positional: 2,
			Run:        m.pkill},
	}
}

func (m Module) procRoot() string {
	if m.ProcRoot == "" {
		return "/proc"
	}
	return m.ProcRoot
}

func (m Module) self() int {
	if m.PID == 0 {
		return os.Getpid()
	}
	return m.PID
}

func (m Module) signal(pid int, sig syscall.Signal) error {
	if m.Signal == nil {
		return syscall.Kill(pid, sig)
	}
	return m.Signal(pid, sig)
}

// Process is one process as list returns it.
type Process struct {
	PID        int     `json:"pid"`
	PPID       int     `json:"ppid"`
	UID        int     `json:"uid"`
	User       string  `json:"user"` // user name, or the uid if it has none
	Name       string  `json:"name"` // the kernel's short name (comm)
	Cmdline    string  `json:"cmdline"`
	State      string  `json:"state"`
	RSSBytes   int64   `json:"rss_bytes"`
	CPUSeconds float64 `json:"cpu_seconds"` // user + system
}

// List is what list returns.
type List struct {
	Processes []Process `json:"processes"`
	Truncated bool      `json:"truncated"`
}

func (m Module) list(ctx context.Context, a modules.Args) (any, error) {
	re, err := pattern("list", a, false)
	if err != nil {
		return nil, err
	}
	limit := a.Int("max_processes")
	if limit <= 0 || limit > MaxProcesses {
		return nil, status.Errorf(status.KindBadArgs, "list: parameter max_processes: must be between 1 and %d, got %d", MaxProcesses, limit)
	}
	pids, err := m.pids()
	if err != nil {
		return nil, err
	}
	users := userNames{}
	res := List{Processes: []Process{}}
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return nil, ctxError(err)
		}
		p, err := m.read(pid, users)
		if err != nil {
			continue // gone, or hidden from us
		}
		if re != nil && !re.MatchString(p.Cmdline) {
			continue
		}
		if len(res.Processes) == int(limit) {
			res.Truncated = true
			break
		}
		res.Processes = append(res.Processes, p)
	}
	return res, nil
}

// Kill is what kill returns.
type Kill struct {
	PID    int    `json:"pid"`
	Signal string `json:"signal"`
}

func (m Module) kill(_ context.Context, a modules.Args) (any, error) {
	sig, name, err := parseSignal("kill", a.Value("signal"))
	if err != nil {
		return nil, err
	}
	pid64 := a.Int("pid")
	if pid64 <= 1 || pid64 > 1<<31-1 {
		return nil, status.Errorf(status.KindBadArgs, "kill: parameter pid: refusing to signal pid %d", pid64)
	}
	pid := int(pid64)
	if pid == m.self() || pid == m.Minion {
		return nil, status.Errorf(status.KindBadArgs, "kill: parameter pid: %d is the minion itself", pid)
	}
	if err := m.signal(pid, sig); err != nil {
		return nil, signalError(pid, name, err)
	}
	return Kill{PID: pid, Signal: name}, nil
}

// PKill is what pkill returns.
type PKill struct {
	Signal  string    `json:"signal"`
	Killed  []int     `json:"killed"`
	Skipped []int     `json:"skipped,omitempty"`
	Failed  []Failure `json:"failed,omitempty"`
}

// Failure is a process pkill could not signal.
type Failure struct {
	PID   int    `json:"pid"`
	Error string `json:"error"`
}

func (m Module) pkill(ctx context.Context, a modules.Args) (any, error) {
	re, err := pattern("pkill", a, true)
	if err != nil {
		return nil, err
	}
	sig, name, err := parseSignal("pkill", a.Value("signal"))
	if err != nil {
		return nil, err
	}
	protected := m.ancestry()
	pids, err := m.pids()
	if err != nil {
		return nil, err
	}
	users := userNames{}
	res := PKill{Signal: name, Killed: []int{}}
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return res, ctxError(err)
		}
		p, err := m.read(pid, users)
		if err != nil || !re.MatchString(p.Cmdline) {
			continue
		}
		if pid <= 1 || protected[pid] {
			res.Skipped = append(res.Skipped, pid)
			continue
		}
		switch err := m.signal(pid, sig); {
		case err == nil:
			res.Killed = append(res.Killed, pid)
		case errors.Is(err, syscall.ESRCH):
			// Exited since it was read.
		default:
			res.Failed = append(res.Failed, Failure{PID: pid, Error: signalError(pid, name, err).Message})
		}
	}
	if len(res.Failed) > 0 {
		return res, status.Errorf(status.KindModuleError, "could not signal %d of %d matching processes: %s",
			len(res.Failed), len(res.Failed)+len(res.Killed), res.Failed[0].Error)
	}
	return res, nil
}

// pattern compiles the pattern argument.
func pattern(method string, a modules.Args, required bool) (*regexp.Regexp, error) {
	s := a.String("pattern")
	if s == "" {
		if required {
			return nil, status.Errorf(status.KindBadArgs, "%s: parameter pattern: must not be empty", method)
		}
		return nil, nil
	}
	re, err := regexp.Compile(s)
	if err != nil {
		return nil, status.Errorf(status.KindBadArgs, "%s: parameter pattern: %v", method, err)
	}
	return re, nil
}

func signalError(pid int, name string, err error) *status.Error {
	switch {
	case errors.Is(err, syscall.ESRCH):
		return status.Errorf(status.KindModuleError, "no process %d", pid)
	case errors.Is(err, syscall.EPERM):
		return status.Errorf(status.KindModuleError, "not permitted to send %s to process %d", name, pid)
	}
	return status.Errorf(status.KindModuleError, "sending %s to process %d: %v", name, pid, err)
}

func ctxError(err error) *status.Error {
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Errorf(status.KindTimeout, "stopped at the call's deadline")
	}
	return status.Errorf(status.KindCancelled, "cancelled")
}

// pids returns the pids in procfs, sorted.
func (m Module) pids() ([]int, error) {
	d, err := os.Open(m.procRoot())
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids, nil
}

// ancestry returns the minion's pid and those of its ancestors, and in a
// runner the daemon's and its ancestors' too.
func (m Module) ancestry() map[int]bool {
	out := map[int]bool{}
	for _, pid := range []int{m.self(), m.Minion} {
		for pid > 0 && !out[pid] && len(out) < 4096 {
			out[pid] = true
			st, err := m.stat(pid)
			if err != nil {
				break
			}
			pid = st.ppid
		}
	}
	return out
}

// procStat is what list uses of /proc/PID/stat.
type procStat struct {
	comm         string
	state        string
	ppid         int
	utime, stime uint64
	rssPages     int64
}

func (m Module) stat(pid int) (procStat, error) {
	data, err := readFile(m.path(pid, "stat"), maxStat)
	if err != nil {
		return procStat{}, err
	}
	return parseStat(data)
}

// parseStat parses /proc/PID/stat: "pid (comm) state ppid ...". comm may
// hold spaces and parentheses, so it ends at the last ')'.
func parseStat(data []byte) (procStat, error) {
	s := string(data)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procStat{}, errors.New("malformed stat")
	}
	f := strings.Fields(s[end+1:])
	// f[0] is field 3 of proc(5), so field n is f[n-3].
	if len(f) < 22 {
		return procStat{}, errors.New("malformed stat: too few fields")
	}
	var st procStat
	var err error
	st.comm, st.state = s[open+1:end], f[0]
	if st.ppid, err = strconv.Atoi(f[1]); err != nil {
		return procStat{}, fmt.Errorf("malformed stat: ppid: %w", err)
	}
	if st.utime, err = strconv.ParseUint(f[11], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("malformed stat: utime: %w", err)
	}
	if st.stime, err = strconv.ParseUint(f[12], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("malformed stat: stime: %w", err)
	}
	if st.rssPages, err = strconv.ParseInt(f[21], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("malformed stat: rss: %w", err)
	}
	return st, nil
}

func (m Module) read(pid int, users userNames) (Process, error) {
	st, err := m.stat(pid)
	if err != nil {
		return Process{}, err
	}
	p := Process{
		PID:        pid,
		PPID:       st.ppid,
		Name:       st.comm,
		State:      st.state,
		RSSBytes:   max(st.rssPages, 0) * int64(os.Getpagesize()),
		CPUSeconds: float64(st.utime+st.stime) / clockTicks,
	}
	statusData, err := readFile(m.path(pid, "status"), maxStatus)
	if err != nil {
		return Process{}, err
	}
	if p.UID, err = realUID(statusData); err != nil {
		return Process{}, err
	}
	p.User = users.lookup(p.UID)
	cmdline, err := readFile(m.path(pid, "cmdline"), maxCmdline)
	if err != nil {
		return Process{}, err
	}
	p.Cmdline = strings.TrimRight(strings.ReplaceAll(string(cmdline), "\x00", " "), " ")
	if p.Cmdline == "" {
		p.Cmdline = "[" + p.Name + "]" // a kernel thread, or a zombie
	}
	return p, nil
}

func (m Module) path(pid int, name string) string {
	return m.procRoot() + "/" + strconv.Itoa(pid) + "/" + name
}

// realUID finds the real uid in /proc/PID/status ("Uid:\treal\teffective...").
func realUID(status []byte) (int, error) {
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.Atoi(f[0])
		}
	}
	return 0, errors.New("no Uid line in status")
}

// readFile reads at most limit bytes of name.
func readFile(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// userNames caches uid to user name lookups for one call.
type userNames map[int]string

func (u userNames) lookup(uid int) string {
	if name, ok := u[uid]; ok {
		return name
	}
	name := strconv.Itoa(uid)
	if usr, err := user.LookupId(name); err == nil {
		name = usr.Username
	}
	u[uid] = name
	return name
}
