//go:build linux

package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// A terminal session for one overlord command: the command's stdin and
// stdout (and stderr unless the test takes it) are a pseudo-terminal, the
// command leads its own session with it as its controlling terminal, so
// ^C written to the terminal interrupts it as a user's would.
type ptySession struct {
	t    *testing.T
	cmd  *exec.Cmd
	tty  *os.File // the terminal's master side
	mu   sync.Mutex
	buf  bytes.Buffer // everything the terminal showed
	read chan struct{}
	done chan struct{} // closed when the command has exited
	err  error         // the command's Wait
}

// startPTY starts the overlord with args on a 200x50 terminal. With
// stderr set, the command's stderr goes there instead (a pipe).
func startPTY(t *testing.T, f *fleet, stderr *bytes.Buffer, args ...string) *ptySession {
	t.Helper()
	return startPTYSized(t, f, stderr, &pty.Winsize{Rows: 50, Cols: 200}, args...)
}

// startPTYSized is startPTY on a terminal of the given size; nil leaves
// it unsized (0x0), as script(1) and some CI shells leave theirs.
func startPTYSized(t *testing.T, f *fleet, stderr *bytes.Buffer, size *pty.Winsize, args ...string) *ptySession {
	t.Helper()
	cmd, _, _ := overlordCmd(f, args...)
	cmd.Stdout, cmd.Stderr = nil, nil
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	if size != nil {
		if err := pty.Setsize(ptmx, size); err != nil {
			t.Fatal(err)
		}
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	if stderr != nil {
		cmd.Stderr = stderr
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	s := &ptySession{t: t, cmd: cmd, tty: ptmx, read: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := ptmx.Read(b)
			s.mu.Lock()
			s.buf.Write(b[:n])
			s.mu.Unlock()
			select {
			case s.read <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = cmd.Process.Kill()
			<-s.done
		}
		ptmx.Close()
	})
	return s
}

// screen returns what the terminal has shown so far, with the CR the
// terminal adds before each newline taken out.
func (s *ptySession) screen() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.ReplaceAll(s.buf.String(), "\r\n", "\n")
}

// waitFor waits until the terminal has shown text matching re and returns
// the match.
func (s *ptySession) waitFor(re *regexp.Regexp, what string) []string {
	s.t.Helper()
	deadline := time.NewTimer(2 * readyTimeout)
	defer deadline.Stop()
	for {
		if m := re.FindStringSubmatch(s.screen()); m != nil {
			return m
		}
		select {
		case <-s.read:
		case <-deadline.C:
			s.t.Fatalf("the terminal has not shown %s after %s:\n%q", what, 2*readyTimeout, s.screen())
		}
	}
}

// wait waits for the command to exit and returns its exit code, once the
// terminal has shown all it wrote.
func (s *ptySession) wait() int {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(2 * readyTimeout):
		s.t.Fatalf("the command has not exited after %s:\n%q", 2*readyTimeout, s.screen())
	}
	// The command has exited: what it wrote is in the terminal; read it
	// all (a read then fails: no process has the terminal open).
	deadline := time.Now().Add(readyTimeout)
	for {
		s.mu.Lock()
		n := s.buf.Len()
		s.mu.Unlock()
		select {
		case <-s.read:
			continue
		case <-time.After(100 * time.Millisecond):
		}
		s.mu.Lock()
		same := n == s.buf.Len()
		s.mu.Unlock()
		if same || time.Now().After(deadline) {
			break
		}
	}
	var ee *exec.ExitError
	if errors.As(s.err, &ee) {
		return ee.ExitCode()
	}
	if s.err != nil {
		s.t.Fatal(s.err)
	}
	return 0
}

// summaryRE matches the summary line; its job ID is the second group.
var (
	summaryRE = regexp.MustCompile(`(?m)(\d+) minions?: .*\(job ([0-9a-f-]{36}), (\w+)\)$`)
)

// afterErase returns what the terminal showed after the last "erase to
// the end of the screen" (mpb's clearing of the line), or all of it.
func afterErase(screen string) string {
	if i := strings.LastIndex(screen, "\x1b[J"); i >= 0 {
		return screen[i+len("\x1b[J"):]
	}
	return screen
}

// TestPTYProgress: on a terminal, a call shows a live progress line on
// stderr with done/total, the counts and the job ID, while the results
// print above it; the line is gone before the summary, which names the
// same job.
func TestPTYProgress(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2")
	g := newGate(t, "go")
	s := startPTY(t, f, nil, "call", "*", "command.run", "case $PWD in */web2) "+g.wait()+";; esac; echo out-$(basename $PWD)")
	m := s.waitFor(regexp.MustCompile(`1/2 done: 1 ok, 0 failed, 1 running, [0-9hms.]+, job ([0-9a-f-]{36})`), "a progress line with web1 done and web2 running")
	id := m[1]
	s.waitFor(regexp.MustCompile(`(?m)^out-web1$`), "web1's output")
	g.open(t)
	if code := s.wait(); code != 0 {
		t.Fatalf("exit %d:\n%q", code, s.screen())
	}
	screen := s.screen()
	sum := summaryRE.FindStringSubmatch(screen)
	if sum == nil || sum[2] != id {
		t.Fatalf("summary %q, want one naming the job of the progress line %s:\n%q", sum, id, screen)
	}
	rest := afterErase(screen)
	if strings.Contains(rest, " done: ") || !strings.Contains(rest, sum[0]) {
		t.Errorf("the progress line is not erased before the summary; after the last erase:\n%q", rest)
	}
	for _, out := range []string{"web1: exit 0", "out-web1\n", "web2: exit 0", "out-web2\n"} {
		if !strings.Contains(screen, out) {
			t.Errorf("the terminal lacks %q:\n%q", out, screen)
		}
	}
}

// TestPTYNoProgress: no progress line when stderr is not a terminal (it
// stays empty), nor with --no-progress; the results and summary show on
// the terminal either way. The command lasts over a second, several
// times the line's refresh.
func TestPTYNoProgress(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2")
	var stderr bytes.Buffer
	s := startPTY(t, f, &stderr, "call", "*", "command.run", "sleep 1; echo hi")
	if code := s.wait(); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr (a pipe) got %q, want nothing", stderr.String())
	}
	if screen := s.screen(); strings.Contains(screen, "\x1b[") || strings.Count(screen, "\nhi\n") != 2 || summaryRE.FindString(screen) == "" {
		t.Errorf("the terminal (stdout):\n%q\nwant the results and the summary, no escape sequence", screen)
	}

	s = startPTY(t, f, nil, "call", "*", "command.run", "sleep 1; echo hi", "--no-progress")
	if code := s.wait(); code != 0 {
		t.Fatalf("--no-progress: exit %d", code)
	}
	if screen := s.screen(); strings.Contains(screen, " done: ") || strings.Contains(screen, "\x1b[") || summaryRE.FindString(screen) == "" {
		t.Errorf("--no-progress: the terminal shows:\n%q", screen)
	}
}

// TestPTYInterrupt: ^C on the terminal during a call to 3 minions, 2 of
// which have answered, still shows their output and a summary, in text
// and in JSON, and leaves no progress line behind.
func TestPTYInterrupt(t *testing.T) {
	t.Parallel()
	// Race-built: the CLI's interrupt during a fan-out.
	f := startRaceFleet(t, "web1", "web2", "web3")
	cmd := "case $PWD in */web3) exec sleep 30;; esac; echo fast-$(basename $PWD)"
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			s := startPTY(t, f, nil, "call", "*", "command.run", cmd, "-o", format)
			if format == "text" {
				s.waitFor(regexp.MustCompile(`(?s)fast-web1.*fast-web2|fast-web2.*fast-web1`), "the fast minions' output")
			}
			s.waitFor(regexp.MustCompile(`2/3 done: 2 ok, 0 failed, 1 running`), "a progress line with 2 of 3 done")
			if _, err := s.tty.Write([]byte{0x03}); err != nil { // ^C
				t.Fatal(err)
			}
			code := s.wait()
			screen := s.screen()
			if code != 1 && code != 4 {
				t.Errorf("exit %d after ^C, want 1 (web3 cancelled) or 4 (web3 goes on detached):\n%q", code, screen)
			}
			rest := afterErase(screen)
			if strings.Contains(rest, " done: ") {
				t.Errorf("a progress line is left after the last erase:\n%q", rest)
			}
			switch format {
			case "text":
				for _, want := range []string{"web1: exit 0", "fast-web1\n", "web2: exit 0", "fast-web2\n"} {
					if !strings.Contains(screen, want) {
						t.Errorf("the terminal lacks %q:\n%q", want, screen)
					}
				}
				if !summaryRE.MatchString(rest) {
					t.Errorf("no summary after the progress line:\n%q", rest)
				}
			case "json":
				i := strings.Index(rest, "{")
				if i < 0 {
					t.Fatalf("no JSON document after ^C:\n%q", screen)
				}
				var job jobView
				if err := json.NewDecoder(strings.NewReader(rest[i:])).Decode(&job); err != nil {
					t.Fatalf("the JSON after ^C: %v\n%q", err, rest[i:])
				}
				for _, n := range []string{"web1", "web2"} {
					if e := job.Minions[n]; !e.OK {
						t.Errorf("%s: %+v, want its result", n, e)
					}
				}
				if len(job.Minions) != 3 {
					t.Errorf("%d minions in the JSON, want 3", len(job.Minions))
				}
			}
		})
	}
}

// TestPTYWaitProgress: `job status --wait` on a terminal shows the
// progress line of the async job it waits for, and the job's results and
// summary after it, with -o json one document on the terminal.
func TestPTYWaitProgress(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2")
	g := newGate(t, "go")
	id := callAsync(t, f, "*", "command.run", "case $PWD in */web2) "+g.wait()+";; esac; echo out-$(basename $PWD)")
	s := startPTY(t, f, nil, "job", "status", id, "--wait", "-o", "json")
	s.waitFor(regexp.MustCompile(`1/2 done: 1 ok, 0 failed, 1 running, [0-9hms.]+, job `+id), "a progress line with web1 done")
	g.open(t)
	if code := s.wait(); code != 0 {
		t.Fatalf("exit %d:\n%q", code, s.screen())
	}
	rest := afterErase(s.screen())
	var job jobView
	if err := json.Unmarshal([]byte(rest), &job); err != nil || job.JobID != id || job.Summary.OK != 2 {
		t.Errorf("after the progress line: %v\n%q\nwant the job's JSON document alone", err, rest)
	}
}
