package file

import (
	"io/fs"
	"testing"
)

// FuzzParseMode checks that any mode write accepts round-trips through the
// octal form stat reports.
func FuzzParseMode(f *testing.F) {
	for _, s := range []string{"0644", "644", "4755", "0o600", "7777", "0", "", "8", "-1", "17777", "0x1f", "00644"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, ok := parseMode(s)
		if !ok {
			return
		}
		if m&^(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
			t.Fatalf("parseMode(%q) = %v: bits beyond permissions", s, m)
		}
		back, ok := parseMode(octal(m))
		if !ok || back != m {
			t.Fatalf("parseMode(%q) = %v, formatted %q, parsed back as %v, %v", s, m, octal(m), back, ok)
		}
	})
}
