//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestScripts runs testdata/*.txtar against the real binaries.
//
// Every script starts with the binaries on PATH and OVERLORD_STATE_DIR set
// to $WORK/overlord. Besides testscript's own commands, scripts may use:
//
//	freeport VAR...
//		set each VAR to a TCP port on 127.0.0.1 that is free now
//	waitport ADDR
//		wait (up to 10s) until ADDR accepts TCP connections;
//		with !, until it refuses them
//	waitconn ADDR
//		wait (up to 10s) until a TCP connection to ADDR is established:
//		a call to the minion at ADDR is being made (it may not have
//		reached the method yet; a command can say so with a file, see
//		waitfile)
//	fleet N | fleet NAME...
//		'overlord ca init' unless done, then register minions web1..webN
//		(or the NAMEs) at free ports, install their bundles and start
//		their daemons, and wait until they accept connections. For a
//		minion web1 it sets WEB1_ADDR to its address; its bundle is
//		$WORK/web1.pem, its state $WORK/web1/ (also its working
//		directory), its log $WORK/web1.log.
//		Minions still running at the end of the script get SIGTERM;
//		one that exited on its own, or does not exit 0 on SIGTERM,
//		fails the test. Then the async jobs' drivers and runners still
//		running, and the commands they started (every process whose
//		command line holds $WORK or that runs under it), are killed;
//		a data race reported in their logs fails the test.
//	stopminion [-kill] NAME...
//		stop minions of the fleet: SIGTERM, then check that each exits
//		with status 0 and its port closes; with -kill, SIGKILL
//	startminion NAME...
//		start stopped minions of the fleet again, at the same address
//	sigminion NAME SIGNAL
//		send SIGNAL (STOP, CONT, TERM, INT, KILL) to a minion, no waiting
//	waitminion NAME
//		wait (up to 10s) for a minion to exit; stdout is how it ended,
//		such as "exit status 0"
//	waitfile FILE [REGEXP]
//		wait (up to 10s) until FILE exists (and matches REGEXP): a
//		minion's log says something, a command has started
//	waitgone PIDFILE
//		wait (up to 10s) until the process whose ID is in PIDFILE is gone
//	exitcode [-within DUR] N PROG [ARG...]
//		run PROG like exec and check that it exits with status N; stdout
//		and stderr are then PROG's. With -within, check too that it
//		exited before DUR: a bound that tells a behaviour from its
//		absence (a call cut short by its --timeout from one that waited
//		out a 120s sleep), with room for a busy machine; never a speed
//		to meet, which belongs in a benchmark
//	jsonfield [-line N] PATH [VALUE]
//		check a field of stdout, which must be one JSON document (or,
//		with -line, of the Nth line of stdout; -1 is the last line).
//		PATH is dot-separated keys and list indexes ("." is the whole
//		document). VALUE is JSON if it parses as JSON, else a string;
//		without VALUE the field must exist. With !, the field must be
//		missing or differ.
//	jsonlines N
//		check that stdout is exactly N lines, each a JSON object
//	setjson VAR [-line N] PATH
//		set VAR to a field of stdout (a string as is, else its JSON)
//	randfile FILE SIZE
//		write SIZE random bytes (a number, with an optional k or M
//		suffix for KiB, MiB) to FILE, mode 0644 (chmod to change it)
//	samebytes FILE1 FILE2
//		check that two files hold the same bytes (with !, that they
//		differ); unlike cmp, a difference is reported as the sizes and
//		the first offset that differs, not as a diff
//	filemode FILE MODE
//		check that FILE's permission bits are MODE (octal, like 0640)
func TestScripts(t *testing.T) {
	t.Parallel()
	testscript.Run(t, scriptParams(t, "testdata"))
}

func scriptParams(t *testing.T, dir string) testscript.Params {
	return testscript.Params{
		Dir: dir,
		// Under a directory of the test's own, so that nothing is left
		// behind even when -run selects some of the scripts.
		WorkdirRoot:         t.TempDir(),
		RequireExplicitExec: true,
		Setup:               setupScript,
		Cmds: map[string]func(*testscript.TestScript, bool, []string){
			"freeport":    cmdFreeport,
			"waitport":    cmdWaitport,
			"waitconn":    cmdWaitconn,
			"waitfile":    cmdWaitfile,
			"waitgone":    cmdWaitgone,
			"fleet":       cmdFleet,
			"stopminion":  cmdStopminion,
			"startminion": cmdStartminion,
			"sigminion":   cmdSigminion,
			"waitminion":  cmdWaitminion,
			"exitcode":    cmdExitcode,
			"jsonfield":   cmdJSONField,
			"jsonlines":   cmdJSONLines,
			"setjson":     cmdSetJSON,
			"randfile":    cmdRandfile,
			"samebytes":   cmdSamebytes,
			"filemode":    cmdFilemode,
		},
	}
}

// stateKey is the key of a script's *scriptState in its Env.Values.
type stateKey struct{}

// scriptState is what the custom commands of one script share.
type scriptState struct {
	// errorf reports a failure found after the script ended (while
	// stopping its minions), when the script itself can no longer fail.
	errorf func(format string, args ...any)
	fleet  *fleet
}

func setupScript(env *testscript.Env) error {
	for _, kv := range binEnv(binDir) {
		k, v, _ := strings.Cut(kv, "=")
		env.Setenv(k, v)
	}
	env.Setenv("OVERLORD_STATE_DIR", filepath.Join(env.WorkDir, "overlord"))
	// A script holds one of the places of the tests running processes
	// for its whole run (see places); deferred first, it is given back
	// last, after the script's fleet is stopped.
	places <- struct{}{}
	env.Defer(func() { <-places })
	st := &scriptState{errorf: func(format string, args ...any) { env.T().Log(fmt.Sprintf(format, args...)) }}
	// testscript hands the *testing.T over wrapped; it still has Errorf.
	if e, ok := env.T().(interface{ Errorf(string, ...any) }); ok {
		st.errorf = e.Errorf
	}
	env.Values[stateKey{}] = st
	return nil
}

func state(ts *testscript.TestScript) *scriptState {
	return ts.Value(stateKey{}).(*scriptState)
}

// fleetOf returns the script's fleet, made on first use; it is stopped
// when the script ends.
func fleetOf(ts *testscript.TestScript) *fleet {
	st := state(ts)
	if st.fleet != nil {
		return st.fleet
	}
	work := ts.Getenv("WORK")
	f := newFleet(work, ts.Getenv("OVERLORD_STATE_DIR"), binDir, "HOME="+work, "TMPDIR="+ts.Getenv("TMPDIR"))
	f.logf = ts.Logf
	st.fleet = f
	ts.Defer(func() {
		for _, err := range f.close() {
			ts.Logf("cleanup: %v", err)
			st.errorf("%s: after the script: %v", ts.Name(), err)
		}
	})
	return f
}

func noNeg(ts *testscript.TestScript, neg bool, name string) {
	if neg {
		ts.Fatalf("unsupported: ! %s", name)
	}
}

func cmdFreeport(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "freeport")
	if len(args) == 0 {
		ts.Fatalf("usage: freeport VAR...")
	}
	for _, v := range args {
		port, err := freePort()
		ts.Check(err)
		ts.Setenv(v, strconv.Itoa(port))
	}
}

func cmdWaitport(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: [!] waitport ADDR")
	}
	ts.Check(waitPort(args[0], !neg, readyTimeout, nil))
}

func cmdWaitconn(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "waitconn")
	if len(args) != 1 {
		ts.Fatalf("usage: waitconn ADDR")
	}
	ts.Check(waitConn(args[0], readyTimeout))
}

func cmdWaitfile(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "waitfile")
	if len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: waitfile FILE [REGEXP]")
	}
	re := regexp.MustCompile("")
	if len(args) == 2 {
		var err error
		re, err = regexp.Compile(args[1])
		ts.Check(err)
	}
	file := ts.MkAbs(args[0])
	deadline := time.Now().Add(readyTimeout)
	for {
		data, err := os.ReadFile(file)
		if err == nil && re.Match(data) {
			return
		}
		if time.Now().After(deadline) {
			if err != nil {
				ts.Fatalf("%v after %s", err, readyTimeout)
			}
			ts.Fatalf("%s does not match %q after %s:\n%s", args[0], re, readyTimeout, data)
		}
		time.Sleep(pollEvery)
	}
}

func cmdWaitgone(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "waitgone")
	if len(args) != 1 {
		ts.Fatalf("usage: waitgone PIDFILE")
	}
	pid, err := strconv.Atoi(strings.TrimSpace(ts.ReadFile(args[0])))
	ts.Check(err)
	deadline := time.Now().Add(readyTimeout)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			ts.Fatalf("pid %d still there after %s", pid, readyTimeout)
		}
		time.Sleep(pollEvery)
	}
}

func cmdFleet(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "fleet")
	if len(args) == 0 {
		ts.Fatalf("usage: fleet N | fleet NAME...")
	}
	names := args
	if n, err := strconv.Atoi(args[0]); err == nil && len(args) == 1 {
		names = nil
		for i := 1; i <= n; i++ {
			names = append(names, "web"+strconv.Itoa(i))
		}
	}
	f := fleetOf(ts)
	ts.Check(f.initCA())
	var added []*minionProc
	for _, name := range names {
		m, err := f.add(name)
		ts.Check(err)
		added = append(added, m)
	}
	for _, m := range added {
		ts.Check(f.start(m))
	}
	for _, m := range added {
		ts.Check(f.ready(m))
		ts.Setenv(addrVar(m.name), m.addr)
		fmt.Fprintf(ts.Stdout(), "%s %s pid %d\n", m.name, m.addr, m.p.Pid())
	}
}

// addrVar is the variable that holds a minion's address: WEB1_ADDR for
// web1.
func addrVar(name string) string {
	v := strings.Map(func(r rune) rune {
		if r == '-' || r == '.' {
			return '_'
		}
		return r
	}, strings.ToUpper(name))
	return v + "_ADDR"
}

func cmdStopminion(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "stopminion")
	kill := len(args) > 0 && args[0] == "-kill"
	if kill {
		args = args[1:]
	}
	if len(args) == 0 {
		ts.Fatalf("usage: stopminion [-kill] NAME...")
	}
	f := fleetOf(ts)
	for _, name := range args {
		m, err := f.minion(name)
		ts.Check(err)
		if kill {
			ts.Check(f.kill(m))
		} else {
			ts.Check(f.stop(m))
		}
		fmt.Fprintf(ts.Stdout(), "%s: %s\n", name, m.p.state())
	}
}

func cmdStartminion(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "startminion")
	if len(args) == 0 {
		ts.Fatalf("usage: startminion NAME...")
	}
	f := fleetOf(ts)
	for _, name := range args {
		m, err := f.minion(name)
		ts.Check(err)
		ts.Check(f.start(m))
		ts.Check(f.ready(m))
	}
}

var signals = map[string]syscall.Signal{
	"STOP": syscall.SIGSTOP, "CONT": syscall.SIGCONT,
	"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "KILL": syscall.SIGKILL,
}

func cmdSigminion(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "sigminion")
	if len(args) != 2 {
		ts.Fatalf("usage: sigminion NAME STOP|CONT|TERM|INT|KILL")
	}
	sig, ok := signals[strings.TrimPrefix(strings.ToUpper(args[1]), "SIG")]
	if !ok {
		ts.Fatalf("unknown signal %q", args[1])
	}
	m, err := fleetOf(ts).minion(args[0])
	ts.Check(err)
	if m.p == nil || m.p.exited() {
		ts.Fatalf("minion %s is not running", m.name)
	}
	if sig != syscall.SIGSTOP && sig != syscall.SIGCONT {
		m.stopped = true // whatever happens next is on purpose
	}
	ts.Check(m.p.signal(sig))
}

func cmdWaitminion(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "waitminion")
	if len(args) != 1 {
		ts.Fatalf("usage: waitminion NAME")
	}
	m, err := fleetOf(ts).minion(args[0])
	ts.Check(err)
	if m.p == nil {
		ts.Fatalf("minion %s was never started", m.name)
	}
	if !m.p.wait(stopTimeout) {
		ts.Fatalf("minion %s still running after %s", m.name, stopTimeout)
	}
	fmt.Fprintln(ts.Stdout(), m.p.state())
}

func cmdExitcode(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "exitcode")
	var within time.Duration
	if len(args) > 1 && args[0] == "-within" {
		d, err := time.ParseDuration(args[1])
		ts.Check(err)
		within, args = d, args[2:]
	}
	if len(args) < 2 {
		ts.Fatalf("usage: exitcode [-within DUR] N PROG [ARG...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	start := time.Now()
	err = ts.Exec(args[1], args[2:]...)
	took := time.Since(start)
	got := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !ee.Exited() {
			ts.Fatalf("%s: %v", args[1], err)
		}
		got = ee.ExitCode()
	}
	ts.Logf("[exit status %d after %s]", got, took.Round(time.Millisecond))
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
	if within > 0 && took >= within {
		ts.Fatalf("%s took %s, want less than %s", args[1], took.Round(time.Millisecond), within)
	}
}

// lineFlag parses an optional leading "-line N".
func lineFlag(ts *testscript.TestScript, args []string) (int, []string) {
	if len(args) < 2 || args[0] != "-line" {
		return 0, args
	}
	n, err := strconv.Atoi(args[1])
	if err != nil || n == 0 {
		ts.Fatalf("-line: want a non-zero line number, got %q", args[1])
	}
	return n, args[2:]
}

// stdoutJSON decodes stdout as one JSON document (line 0) or its line N.
func stdoutJSON(ts *testscript.TestScript, line int) any {
	out := ts.ReadFile("stdout")
	src := out
	if line != 0 {
		lines := nonEmptyLines(out)
		i := line - 1
		if line < 0 {
			i = len(lines) + line
		}
		if i < 0 || i >= len(lines) {
			ts.Fatalf("stdout has %d lines, no line %d", len(lines), line)
		}
		src = lines[i]
	}
	v, err := decodeOne(src)
	if err != nil {
		ts.Fatalf("stdout is not one JSON document: %v", err)
	}
	return v
}

// decodeOne decodes s, which must hold exactly one JSON value.
func decodeOne(s string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("more after the first JSON value (offset %d)", dec.InputOffset())
	}
	return v, nil
}

func nonEmptyLines(s string) []string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "" {
			lines = append(lines, sc.Text())
		}
	}
	return lines
}

// lookup follows a dot-separated path of keys and list indexes.
func lookup(v any, path string) (any, bool) {
	if path == "." || path == "" {
		return v, true
	}
	for _, key := range strings.Split(path, ".") {
		switch c := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = c[key]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(key)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			v = c[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// parseWant reads a value as JSON if it is JSON, else as a string.
func parseWant(s string) any {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err == nil {
		return v
	}
	return s
}

func compact(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return strings.TrimSpace(b.String())
}

func cmdJSONField(ts *testscript.TestScript, neg bool, args []string) {
	line, args := lineFlag(ts, args)
	if len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: [!] jsonfield [-line N] PATH [VALUE]")
	}
	got, ok := lookup(stdoutJSON(ts, line), args[0])
	if len(args) == 1 {
		switch {
		case ok && neg:
			ts.Fatalf("%s is present: %s", args[0], compact(got))
		case !ok && !neg:
			ts.Fatalf("%s is missing", args[0])
		}
		return
	}
	want := parseWant(args[1])
	match := ok && reflect.DeepEqual(got, want)
	switch {
	case match && neg:
		ts.Fatalf("%s is %s, want anything else", args[0], compact(got))
	case !match && !neg && !ok:
		ts.Fatalf("%s is missing, want %s", args[0], compact(want))
	case !match && !neg:
		ts.Fatalf("%s is %s, want %s", args[0], compact(got), compact(want))
	}
}

func cmdJSONLines(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "jsonlines")
	if len(args) != 1 {
		ts.Fatalf("usage: jsonlines N")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	out := ts.ReadFile("stdout")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if out == "" {
		lines = nil
	}
	if len(lines) != want {
		ts.Fatalf("stdout has %d lines, want %d", len(lines), want)
	}
	for i, l := range lines {
		v, err := decodeOne(l)
		if err != nil {
			ts.Fatalf("line %d is not JSON: %v", i+1, err)
		}
		if _, ok := v.(map[string]any); !ok {
			ts.Fatalf("line %d is not a JSON object: %s", i+1, l)
		}
	}
}

func cmdSetJSON(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "setjson")
	if len(args) < 2 {
		ts.Fatalf("usage: setjson VAR [-line N] PATH")
	}
	name := args[0]
	line, rest := lineFlag(ts, args[1:])
	if len(rest) != 1 {
		ts.Fatalf("usage: setjson VAR [-line N] PATH")
	}
	v, ok := lookup(stdoutJSON(ts, line), rest[0])
	if !ok {
		ts.Fatalf("%s is missing", rest[0])
	}
	s, isString := v.(string)
	if !isString {
		s = compact(v)
	}
	ts.Setenv(name, s)
}

func cmdRandfile(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "randfile")
	if len(args) != 2 {
		ts.Fatalf("usage: randfile FILE SIZE")
	}
	num, unit := args[1], int64(1)
	switch {
	case strings.HasSuffix(num, "k"):
		num, unit = strings.TrimSuffix(num, "k"), 1<<10
	case strings.HasSuffix(num, "M"):
		num, unit = strings.TrimSuffix(num, "M"), 1<<20
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		ts.Fatalf("randfile: bad size %q", args[1])
	}
	data := make([]byte, n*unit)
	_, err = rand.Read(data)
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), data, 0o644))
}

func cmdSamebytes(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: [!] samebytes FILE1 FILE2")
	}
	a, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	b, err := os.ReadFile(ts.MkAbs(args[1]))
	ts.Check(err)
	same := bytes.Equal(a, b)
	switch {
	case same && neg:
		ts.Fatalf("%s and %s hold the same %d bytes", args[0], args[1], len(a))
	case !same && !neg:
		i := 0
		for i < len(a) && i < len(b) && a[i] == b[i] {
			i++
		}
		ts.Fatalf("%s (%d bytes) and %s (%d bytes) differ from offset %d on", args[0], len(a), args[1], len(b), i)
	}
}

func cmdFilemode(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "filemode")
	if len(args) != 2 {
		ts.Fatalf("usage: filemode FILE MODE")
	}
	want, err := strconv.ParseUint(args[1], 8, 32)
	if err != nil {
		ts.Fatalf("filemode: bad mode %q", args[1])
	}
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	if got := fi.Mode().Perm(); got != os.FileMode(want) {
		ts.Fatalf("%s has mode %#o, want %#o", args[0], got, want)
	}
}
