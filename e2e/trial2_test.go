//go:build linux

package e2e

import (
	"regexp"
	"strings"
	"testing"
)

// TestPTYUnsizedProgress: a terminal that reports no size (0x0, as
// script(1) leaves one) still shows the progress line; mpb alone drew
// nothing on a screen of no rows.
func TestPTYUnsizedProgress(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2")
	g := newGate(t, "go")
	s := startPTYSized(t, f, nil, nil, "call", "*", "command.run", "case $PWD in */web2) "+g.wait()+";; esac; echo out")
	s.waitFor(regexp.MustCompile(`1/2 done: 1 ok, 0 failed, 1 running`), "a progress line on an unsized terminal")
	g.open(t)
	if code := s.wait(); code != 0 {
		t.Fatalf("exit %d:\n%q", code, s.screen())
	}
	if rest := afterErase(s.screen()); strings.Contains(rest, " done: ") || !summaryRE.MatchString(rest) {
		t.Errorf("the progress line is not erased before the summary:\n%q", rest)
	}
}

// TestPTYInterruptRedrawsFromColumn0: every redraw of the progress line
// (cursor up, erase) starts at column 0, so the ^C the terminal echoes
// two columns into the line leaves nothing of the old line behind.
func TestPTYInterruptRedrawsFromColumn0(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2")
	s := startPTY(t, f, nil, "call", "*", "command.run", "case $PWD in */web2) exec sleep 30;; esac; echo fast")
	s.waitFor(regexp.MustCompile(`1/2 done: 1 ok, 0 failed, 1 running`), "a progress line with web1 done")
	if _, err := s.tty.Write([]byte{0x03}); err != nil { // ^C
		t.Fatal(err)
	}
	if code := s.wait(); code != 4 && code != 1 {
		t.Fatalf("exit %d after ^C:\n%q", code, s.screen())
	}
	screen := s.screen()
	ups := regexp.MustCompile(`.?\x1b\[\d+A`).FindAllString(screen, -1)
	if len(ups) == 0 {
		t.Fatalf("no redraw of the progress line:\n%q", screen)
	}
	for _, up := range ups {
		if !strings.HasPrefix(up, "\r") {
			t.Errorf("a redraw (%q) does not start at column 0:\n%q", up, screen)
			break
		}
	}
}
