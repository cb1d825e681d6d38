//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// How long the helpers wait for a condition before giving up. These are
// deadlines, not speed assertions: on a busy machine a process can take
// seconds to start, and waiting costs nothing when it is quick.
const (
	readyTimeout = 60 * time.Second // a port to accept, a connection to show up
	stopTimeout  = 30 * time.Second // a process to exit after SIGTERM
	pollEvery    = 10 * time.Millisecond
)

// proc is a process a test started and must stop.
type proc struct {
	cmd     *exec.Cmd
	logPath string        // its stdout and stderr
	done    chan struct{} // closed once it has exited and been reaped
	err     error         // from Wait, once done
}

// startProc starts bin with args in dir, its output going to logPath.
func startProc(dir, logPath string, env []string, bin string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Dir = env, dir
	cmd.Stdout, cmd.Stderr = f, f
	// If the test binary dies, take the process with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process ID.
func (p *proc) Pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig unless the process has exited.
func (p *proc) signal(sig syscall.Signal) error {
	if p.exited() {
		return nil
	}
	err := p.cmd.Process.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// wait waits up to d for the process to exit and reports whether it did.
func (p *proc) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// state describes how the process ended, like exec's "exit status 0".
func (p *proc) state() string { return p.cmd.ProcessState.String() }

// terminate stops the process: SIGCONT (in case it was stopped), SIGTERM,
// then SIGKILL if it is still there after timeout. It returns an error
// if the process did not exit with status 0 on SIGTERM.
func (p *proc) terminate(timeout time.Duration) error {
	if p.exited() {
		return nil
	}
	_ = p.signal(syscall.SIGCONT)
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	if !p.wait(timeout) {
		_ = p.signal(syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("pid %d still running %s after SIGTERM; killed", p.Pid(), timeout)
	}
	if p.err != nil {
		return fmt.Errorf("pid %d exited after SIGTERM with %v", p.Pid(), p.err)
	}
	return nil
}

// kill sends SIGKILL and waits until the process is reaped.
func (p *proc) kill() {
	_ = p.signal(syscall.SIGKILL)
	<-p.done
}

// logTail returns the last n lines of the process's output.
func (p *proc) logTail(n int) string {
	data, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
// portsGiven holds the ports freePort has handed out.
var portsGiven sync.Map

func freePort() (int, error) {
	// Ports from the kernel's ephemeral range (":0") are also handed out
	// as source ports of outgoing connections, so one freed here may be
	// taken before the minion binds it. Pick below that range, at
	// random, and check that it is free.
	// A port handed out once is never handed out again in this run: a
	// minion stopped and started again at its address (startminion)
	// needs it back, and two tests running at once must not get the same.
	for range 100 {
		port := 20000 + rand.IntN(12000)
		if _, taken := portsGiven.LoadOrStore(port, true); taken {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		return port, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitPort waits until addr accepts TCP connections (open) or refuses
// them (!open), for at most timeout. If p is not nil and exits first,
// waitPort gives up at once.
func waitPort(addr string, open bool, timeout time.Duration, p *proc) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		if (err == nil) == open {
			return nil
		}
		if p != nil && open && p.exited() {
			return fmt.Errorf("process %d exited (%s) before %s accepted connections:\n%s", p.Pid(), p.state(), addr, p.logTail(20))
		}
		if time.Now().After(deadline) {
			if open {
				return fmt.Errorf("%s did not accept connections within %s: %v", addr, timeout, err)
			}
			return fmt.Errorf("%s still accepts connections after %s", addr, timeout)
		}
		time.Sleep(pollEvery)
	}
}

// waitConn waits until a TCP connection to addr (an IPv4 address) is
// established, as seen in /proc/net/tcp: a call to the minion at addr is in
// flight.
func waitConn(addr string, timeout time.Duration) error {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host).To4()
	port, err := strconv.Atoi(portStr)
	if ip == nil || err != nil {
		return fmt.Errorf("waitconn: want IPv4:PORT, got %q", addr)
	}
	// /proc/net/tcp prints the address as a native-endian 32-bit word.
	want := map[string]bool{
		fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], port): true,
		fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[0], ip[1], ip[2], ip[3], port): true,
	}
	deadline := time.Now().Add(timeout)
	for {
		data, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			// sl local_address rem_address st ...
			f := strings.Fields(sc.Text())
			if len(f) > 3 && want[f[1]] && f[3] == "01" { // 01: ESTABLISHED
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no connection to %s established within %s", addr, timeout)
		}
		time.Sleep(pollEvery)
	}
}

// fleet is an overlord state directory and the minion processes it knows,
// all under one directory:
//
//	DIR/overlord     the overlord's state (CA, identity, overlord.db)
//	DIR/NAME.pem     a minion's bundle
//	DIR/NAME/        a minion's state directory
//	DIR/NAME.log     a minion's output
type fleet struct {
	dir      string
	stateDir string
	// bin is where its binaries are: binDir, or raceBinDir for a fleet
	// that looks for data races (race says which).
	bin     string
	race    bool
	env     []string
	minions map[string]*minionProc
	names   []string // in the order added
	// logf, if set, notes what close had to clean up.
	logf func(format string, args ...any)
}

// minionProc is a minion of a fleet and, while it runs, its process.
type minionProc struct {
	name, addr, dir, bundle, logPath string
	p                                *proc
	// stopped is set when a test stops or kills the process on purpose;
	// a minion that exits without it has crashed.
	stopped bool
}

// newFleet returns a fleet of the binaries in bin (binDir or raceBinDir),
// which they get with env (after binEnv's).
func newFleet(dir, stateDir, bin string, env ...string) *fleet {
	return &fleet{
		dir: dir, stateDir: stateDir, bin: bin, race: raceProduct && bin == raceBinDir,
		env: append(binEnv(bin), env...), minions: map[string]*minionProc{},
	}
}

// path returns the path of the fleet's binary named bin (overlord or
// minion).
func (f *fleet) path(bin string) string { return filepath.Join(f.bin, bin) }

// run runs a binary of the fleet and returns its output.
func (f *fleet) run(bin string, args ...string) (string, error) {
	cmd := exec.Command(f.path(bin), args...)
	cmd.Env = f.env
	cmd.Dir = f.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// overlord runs the overlord CLI on the fleet's state directory.
func (f *fleet) overlord(args ...string) (string, error) {
	return f.run("overlord", append([]string{"--state-dir", f.stateDir}, args...)...)
}

// initCA runs 'overlord ca init' unless the state directory has a CA.
func (f *fleet) initCA() error {
	if _, err := os.Stat(filepath.Join(f.stateDir, "ca.key")); err == nil {
		return nil
	}
	_, err := f.overlord("ca", "init")
	return err
}

// add registers name at a free port and installs its bundle in its
// state directory; it does not start it.
func (f *fleet) add(name string) (*minionProc, error) {
	if _, ok := f.minions[name]; ok {
		return nil, fmt.Errorf("minion %s already in the fleet", name)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	m := &minionProc{
		name:    name,
		addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		dir:     filepath.Join(f.dir, name),
		bundle:  filepath.Join(f.dir, name+".pem"),
		logPath: filepath.Join(f.dir, name+".log"),
	}
	if _, err := f.overlord("minion", "add", name, "--addr", m.addr, "--bundle-out", m.bundle); err != nil {
		return nil, err
	}
	if _, err := f.run("minion", "--state-dir", m.dir, "init", "--bundle", m.bundle); err != nil {
		return nil, err
	}
	f.minions[name] = m
	f.names = append(f.names, name)
	return m, nil
}

// start starts a minion's daemon, in its state directory; wait for it
// with ready.
func (f *fleet) start(m *minionProc) error {
	if m.p != nil && !m.p.exited() {
		return fmt.Errorf("minion %s is already running (pid %d)", m.name, m.p.Pid())
	}
	p, err := startProc(m.dir, m.logPath, f.env, f.path("minion"),
		"--state-dir", m.dir, "serve", "--listen", m.addr, "--log-level", "debug", "--grace", "3s")
	if err != nil {
		return err
	}
	m.p, m.stopped = p, false
	return nil
}

// ready waits until a started minion accepts connections.
func (f *fleet) ready(m *minionProc) error {
	if m.p == nil {
		return fmt.Errorf("minion %s was not started", m.name)
	}
	return waitPort(m.addr, true, readyTimeout, m.p)
}

// kill kills a running minion with SIGKILL and waits until it is gone.
func (f *fleet) kill(m *minionProc) error {
	if m.p == nil || m.p.exited() {
		return fmt.Errorf("minion %s is not running", m.name)
	}
	m.stopped = true
	m.p.kill()
	return nil
}

// minion returns the named minion.
func (f *fleet) minion(name string) (*minionProc, error) {
	m, ok := f.minions[name]
	if !ok {
		return nil, fmt.Errorf("no minion %s in the fleet (have %s)", name, strings.Join(f.names, ", "))
	}
	return m, nil
}

// stop stops a running minion with SIGTERM and checks that it exited with
// status 0 and that its port is closed.
func (f *fleet) stop(m *minionProc) error {
	if m.p == nil || m.p.exited() {
		return fmt.Errorf("minion %s is not running", m.name)
	}
	m.stopped = true
	if err := m.p.terminate(stopTimeout); err != nil {
		return fmt.Errorf("minion %s: %v\n%s", m.name, err, m.p.logTail(20))
	}
	return waitPort(m.addr, false, readyTimeout, nil)
}

// close stops every minion still running, killing those that do not exit
// on SIGTERM, then kills whatever else of the fleet's directory still runs
// (async jobs' drivers, runners and their commands: see killDetached),
// and returns what went wrong, including a data race reported by a driver
// or a runner.
func (f *fleet) close() (errs []error) {
	defer func() {
		killed, err := killDetached(f.dir)
		if err != nil {
			errs = append(errs, err)
		}
		for _, p := range killed {
			if f.logf != nil {
				f.logf("cleanup: killed pid %d: %s", p.pid, p.cmdline)
			}
		}
		for _, l := range raceReports(f) {
			data, _ := os.ReadFile(l)
			errs = append(errs, fmt.Errorf("data race reported in %s:\n%s", l, data))
		}
	}()
	for _, name := range f.names {
		m := f.minions[name]
		if m.p == nil || m.stopped {
			continue
		}
		if m.p.exited() {
			errs = append(errs, fmt.Errorf("minion %s exited on its own (%s)\n%s", name, m.p.state(), m.p.logTail(20)))
			continue
		}
		if err := m.p.terminate(stopTimeout); err != nil {
			errs = append(errs, fmt.Errorf("minion %s: %v\n%s", name, err, m.p.logTail(20)))
		}
	}
	return errs
}
