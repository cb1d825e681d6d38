package process

import (
	"testing"
)

// FuzzParseSignal checks that parseSignal accepts only signals 0 to 64 and
// that the name it reports parses back to the same signal.
func FuzzParseSignal(f *testing.F) {
	for _, s := range []string{"TERM", "sigkill", "SIGHUP", "9", "0", "64", "65", "-1", "", "SIG", " usr1 ", "40"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sig, name, err := parseSignal("kill", s)
		if err != nil {
			return
		}
		if sig < 0 || sig > maxSignal {
			t.Fatalf("parseSignal(%q) = %d", s, sig)
		}
		back, _, err := parseSignal("kill", name)
		if err != nil || back != sig {
			t.Fatalf("parseSignal(%q) = %d %q, which parses back as %d, %v", s, sig, name, back, err)
		}
	})
}

// parseStat must not be fooled by a command name holding ") ".
func TestParseStatHostileComm(t *testing.T) {
	st, err := parseStat([]byte("42 (a) S 1 (b) R 7 42 42 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 100 1000 5 0 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if st.comm != "a) S 1 (b" || st.state != "R" || st.ppid != 7 || st.utime != 3 || st.stime != 4 || st.rssPages != 5 {
		t.Errorf("parsed %+v", st)
	}
	for _, bad := range []string{"", "42", "42 (x", "42 (x) S 1", "42 (x) S notanumber 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 100 1000 5"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) did not fail", bad)
		}
	}
}
