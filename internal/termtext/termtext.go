// Package termtext makes text from minions safe to print on a terminal.
//
// A minion's output goes to the operator's terminal as text. Written as it
// is, an escape sequence in it could set the window title, clear the
// screen, move the cursor over lines already printed, or (on some
// terminals) answer back as if typed; a carriage return can overwrite a
// line, and a bidi override can make text read differently from what it
// is. Visible renders every such character as visible text instead, the
// way `cat -v` does, and leaves everything else, newlines, tabs and
// printable UTF-8 in any script, as it is.
//
// # Notation
//
//   - C0 control bytes (0x00-0x1f) other than tab and newline, in caret
//     notation: ESC is ^[, BEL ^G, CR ^M, NUL ^@.
//   - DEL (0x7f) is ^?.
//   - C1 control characters (U+0080-U+009F, such as U+009B, a one-character
//     CSI) and the characters that reorder or isolate text (U+061C,
//     U+200E, U+200F, U+202A-U+202E, U+2066-U+2069) and the line and
//     paragraph separators (U+2028, U+2029), as \u followed by four
//     lower-case hex digits: \u009b, \u202e.
//   - A byte that is not part of valid UTF-8, as \x and two lower-case hex
//     digits: \xff.
//
// The notation is for people: a literal "^[" or "\xff" in the text looks
// the same as the character it stands for. Scripts that need the exact
// bytes read JSON output or use --raw.
package termtext

import (
	"strings"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// Visible returns s with every control character other than newline and
// tab, every text-reordering character and every byte that is not valid
// UTF-8 replaced by a visible notation (see the package doc). s comes back
// as it is when it has none.
func Visible(s string) string {
	return render(s, false)
}

// Line is Visible for text that must stay on one line (a table cell, an
// error message): newline and tab are shown too, as ^J and ^I.
func Line(s string) string {
	return render(s, true)
}

func render(s string, oneLine bool) string {
	i := firstUnsafe(s, oneLine)
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if safeASCII(c, oneLine) {
				b.WriteByte(c)
			} else {
				b.WriteByte('^')
				b.WriteByte(c ^ 0x40) // 0x1b -> '[', 0x7f -> '?'
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\x`)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
		case hidden(r):
			b.WriteString(`\u`)
			for shift := 12; shift >= 0; shift -= 4 {
				b.WriteByte(hexDigits[(r>>shift)&0xf])
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// firstUnsafe returns the index of the first byte of s that needs
// rendering, or len(s).
func firstUnsafe(s string, oneLine bool) int {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if !safeASCII(c, oneLine) {
				return i
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || hidden(r) {
			return i
		}
		i += size
	}
	return len(s)
}

func safeASCII(c byte, oneLine bool) bool {
	switch {
	case c == '\n' || c == '\t':
		return !oneLine
	case c < 0x20 || c == 0x7f:
		return false
	}
	return true
}

// hidden reports whether r is a C1 control, or a character that changes
// the order or the lines of the text around it without showing itself.
func hidden(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f: // C1 controls, U+009B is CSI
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f: // ALM, LRM, RLM
		return true
	case r >= 0x202a && r <= 0x202e: // LRE, RLE, PDF, LRO, RLO
		return true
	case r >= 0x2066 && r <= 0x2069: // LRI, RLI, FSI, PDI
		return true
	case r == 0x2028 || r == 0x2029: // line and paragraph separators
		return true
	}
	return false
}
