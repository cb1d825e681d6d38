package termtext_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/overlordhq/overlord/internal/termtext"
)

func TestVisible(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain ASCII", "hello world\n", "hello world\n"},
		{"tab and newline kept", "a\tb\nc\n", "a\tb\nc\n"},
		{"multi-byte UTF-8 kept", "héllo 日本 ✓ 😀\n", "héllo 日本 ✓ 😀\n"},
		{"U+FFFD itself kept", "a\uFFFDb", "a\uFFFDb"},
		{"ESC and BEL (title and clear screen)", "\x1b]0;pwned\x07\x1b[2J", "^[]0;pwned^G^[[2J"},
		{"carriage return", "ok\rFAILED\r\n", "ok^MFAILED^M\n"},
		{"NUL and other C0", "\x00\x01\x08\x1f", "^@^A^H^_"},
		{"DEL", "a\x7fb", "a^?b"},
		{"C1 CSI as a character", "\u009b2J", `\u009b2J`},
		{"C1 range ends", "\u0080\u009f\u00a0", `\u0080\u009f` + "\u00a0"},
		{"bidi override", "admin\u202egnp.exe", `admin\u202egnp.exe`},
		{"bidi isolates and marks", "\u2066\u2069\u200e\u200f\u061c", `\u2066\u2069\u200e\u200f\u061c`},
		{"line separator", "a\u2028b", `a\u2028b`},
		{"invalid UTF-8 bytes", "\xff\xfe", `\xff\xfe`},
		{"a lone 8-bit CSI byte", "\x9b2J", `\x9b2J`},
		{"truncated multi-byte", "日\xe6\x9c", `日\xe6\x9c`},
		{"valid around invalid", "é\xffé", `é\xffé`},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := termtext.Visible(tt.in)
			if got != tt.want {
				t.Errorf("Visible(%q) = %q, want %q", tt.in, got, tt.want)
			}
			checkSafe(t, got, false)
		})
	}
}

func TestLine(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "connection refused", "connection refused"},
		{"newline and tab shown", "a\nb\tc", "a^Jb^Ic"},
		{"escape", "x\x1b[31mred", "x^[[31mred"},
		{"UTF-8 kept", "日本", "日本"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := termtext.Line(tt.in)
			if got != tt.want {
				t.Errorf("Line(%q) = %q, want %q", tt.in, got, tt.want)
			}
			checkSafe(t, got, true)
		})
	}
}

// checkSafe fails if s holds a byte or character a terminal would act on.
func checkSafe(t *testing.T, s string, oneLine bool) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Errorf("%q is not valid UTF-8", s)
	}
	for _, r := range s {
		if (r < 0x20 && (oneLine || (r != '\n' && r != '\t'))) || (r >= 0x7f && r <= 0x9f) ||
			strings.ContainsRune("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029", r) {
			t.Errorf("%q holds %U", s, r)
		}
	}
}

// Text that needs nothing comes back as it is, without a copy.
func TestVisibleNoCopy(t *testing.T) {
	s := strings.Repeat("héllo\tworld\n", 100)
	if n := testing.AllocsPerRun(10, func() { _ = termtext.Visible(s) }); n != 0 {
		t.Errorf("Visible of clean text allocated %v times, want 0", n)
	}
}

// FuzzVisible checks that no input leaves anything a terminal acts on.
func FuzzVisible(f *testing.F) {
	for _, s := range []string{"\x1b]0;t\x07", "\xff\xfe", "\u202e", "\u009b", "a\rb", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkSafe(t, termtext.Visible(s), false)
		checkSafe(t, termtext.Line(s), true)
	})
}
