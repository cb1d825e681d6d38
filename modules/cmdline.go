package modules

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/overlordhq/overlord/status"
)

var argName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// NoPositional, as a Method's Positional, means that a command line gives
// every parameter as key=value.
const NoPositional = -1

// Dash is the word that ends the words a command line reads as key=value
// (the `--` of `overlord call TARGET command.run -- df -h /`).
const Dash = "--"

// PositionalCount returns how many of m's parameters, from the first, a
// command line fills with plain words.
func (m *Method) PositionalCount() int {
	switch {
	case m.Positional == 0 || m.Positional > len(m.Params):
		return len(m.Params)
	case m.Positional < 0:
		return 0
	}
	return m.Positional
}

// positionalInfo is Positional as a description says it: absent for all.
func (m *Method) positionalInfo() *int {
	if m.Positional == 0 {
		return nil
	}
	n := m.PositionalCount()
	return &n
}

// MethodFromInfo returns the method a description describes, to parse
// command lines for it (a plugin the overlord knows from the minions'
// descriptions). It has no Run.
func MethodFromInfo(info MethodInfo) *Method {
	m := &Method{Name: info.Name, Doc: info.Doc, Params: info.Params, Returns: info.Returns}
	if info.Positional != nil {
		if m.Positional = *info.Positional; m.Positional <= 0 {
			m.Positional = NoPositional
		}
	}
	return m
}

// ParseCommandLine turns the words after MODULE.METHOD on a command line
// into named and positional arguments of call ("command.run"), the
// method m. An error is of kind bad_args and its message starts with
// call.
//
// When the method is known (m != nil):
//
//   - A word key=value names a parameter of m. A word that looks like
//     key=value (key a name, no white space in the word) with a key that
//     is not a parameter is an error naming the key and the parameters,
//     so `runas=nobody` never lands in cwd; a word with white space
//     (`'FOO=1 make'`) is a plain word.
//   - Plain words fill the first PositionalCount parameters in order;
//     more words are an error that says how to quote them.
//   - The words after a Dash are plain words whatever they look like.
//     They fill the positional parameters left, one each, except that
//     the last positional parameter, if it takes a string, takes all the
//     words left: one word as it is, several joined with spaces, each
//     quoted for a POSIX shell as it was typed, so that
//     `command.run -- df -h /` runs `df -h /`.
//
// A value is converted by the type of the parameter it fills: a
// parameter that takes a string gets the word as written (unless the
// word is JSON of another type the parameter takes, such as a list);
// otherwise a word that parses as JSON is JSON and anything else is a
// string.
//
// When m is nil (a module only the minions know), key=value is named when
// key looks like a name, every other word (and every word after a Dash)
// is positional, and every value is JSON if it parses and a string if
// not.
//
// A parameter named twice is an error in both cases.
func ParseCommandLine(call string, m *Method, words []string) (named map[string]any, positional []any, err error) {
	bad := func(format string, a ...any) error {
		return status.Errorf(status.KindBadArgs, "%s %s", call, fmt.Sprintf(format, a...))
	}
	before, after, dashed := words, []string(nil), false
	for i, w := range words {
		if w == Dash {
			before, after, dashed = words[:i], words[i+1:], true
			break
		}
	}
	var plain []string
	for _, w := range before {
		if k, v, ok := splitNamed(m, w); ok {
			if _, dup := named[k]; dup {
				return nil, nil, bad("parameter %s given twice", k)
			}
			if named == nil {
				named = make(map[string]any)
			}
			var p *Param
			if m != nil {
				pp, _ := m.param(k)
				p = &pp
			}
			named[k] = convert(p, v)
			continue
		}
		if m != nil {
			if k, ok := looksNamed(w); ok {
				return nil, nil, bad("has no parameter %s; it has: %s", k, m.paramNames())
			}
		}
		plain = append(plain, w)
	}
	if dashed && len(after) == 0 {
		return nil, nil, bad("has nothing after --: the words after -- are plain words, such as a command (%s -- df -h /)", call)
	}
	if m == nil {
		plain = append(plain, after...)
	} else {
		n := m.PositionalCount()
		if len(plain) > n {
			return nil, nil, tooMany(call, m, append(plain, after...))
		}
		for i, w := range after {
			if len(plain) >= n {
				return nil, nil, tooMany(call, m, append(plain, after[i:]...))
			}
			if last := m.Params[n-1]; len(plain) == n-1 && (last.accepts(String) || last.accepts(Any)) {
				plain = append(plain, ShellJoin(after[i:]))
				break
			}
			plain = append(plain, w)
		}
	}
	for i, w := range plain {
		var p *Param
		if m != nil && i < len(m.Params) {
			p = &m.Params[i]
		}
		positional = append(positional, convert(p, w))
	}
	return named, positional, nil
}

// tooMany explains that words are more than m takes by position: quoted
// together, or after --, if they go to a string parameter.
func tooMany(call string, m *Method, words []string) error {
	n := m.PositionalCount()
	var msg string
	switch last := n - 1; {
	case len(m.Params) == 0:
		msg = fmt.Sprintf("%s takes no arguments; got %s", call, ShellJoin(words))
	case n == 0:
		msg = fmt.Sprintf("%s takes no plain words, only key=value (it has: %s); got %s", call, m.paramNames(), ShellJoin(words))
	case m.Params[last].accepts(String):
		rest, typed := strings.Join(words[last:], " "), ShellWords(words[last:])
		if rest != typed {
			// A word with a space or a quote in it: quoted together, the
			// words would not give back what was typed; -- does.
			msg = fmt.Sprintf("%s takes %s as one word: put the words after -- (%s -- %s)",
				call, paramNoun(m.Params[last]), call, typed)
			break
		}
		msg = fmt.Sprintf("%s takes %s as one word: quote it (%s) or put it after -- (%s -- %s)",
			call, paramNoun(m.Params[last]), ShellQuote(rest), call, rest)
	default:
		names := make([]string, n)
		for i := range names {
			names[i] = m.Params[i].Name
		}
		msg = fmt.Sprintf("%s takes %d plain word(s) (%s), got %d: give the others as key=value (it has: %s)",
			call, n, strings.Join(names, ", "), len(words), m.paramNames())
	}
	return status.Errorf(status.KindBadArgs, "%s", msg)
}

// paramNoun names a parameter in a sentence.
func paramNoun(p Param) string {
	switch p.Name {
	case "cmd":
		return "the command"
	case "script":
		return "the script"
	}
	return p.Name
}

// splitNamed returns the key and value of a word key=value that names a
// parameter: of m if m is known, any name if not.
func splitNamed(m *Method, w string) (key, value string, ok bool) {
	key, value, found := strings.Cut(w, "=")
	if !found || !argName.MatchString(key) {
		return "", "", false
	}
	if m != nil {
		if _, known := m.param(key); !known {
			return "", "", false
		}
	}
	return key, value, true
}

// looksNamed reports whether w looks like key=value meant as a parameter:
// a name, =, and no white space anywhere (`FOO=1 make` is a command).
func looksNamed(w string) (key string, ok bool) {
	key, _, found := strings.Cut(w, "=")
	if !found || !argName.MatchString(key) || strings.ContainsAny(w, " \t\n\r\v\f") {
		return "", false
	}
	return key, true
}

func convert(p *Param, raw string) any {
	var v any
	jsonErr := json.Unmarshal([]byte(raw), &v)
	if p == nil || p.Type == Any {
		if jsonErr == nil {
			return v
		}
		return raw
	}
	if jsonErr == nil {
		if _, isStr := v.(string); !isStr && p.check(v) == nil {
			return v
		}
	}
	if p.accepts(String) || p.accepts(Duration) || jsonErr != nil {
		return raw
	}
	return v
}

// ShellJoin returns words as one POSIX shell command line that gives
// them back as they are: one word as it is, several each quoted as
// needed and joined with spaces.
func ShellJoin(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = ShellQuote(w)
	}
	return strings.Join(quoted, " ")
}

// ShellWords returns words as a shell command line that gives them back
// as they are, each quoted as needed (a single word too, unlike
// ShellJoin): what to type after -- for these words.
func ShellWords(words []string) string {
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = ShellQuote(w)
	}
	return strings.Join(quoted, " ")
}

// ShellQuote returns s quoted for a POSIX shell: as it is if every
// character is one that no shell treats specially, else in single
// quotes, with each ' written '\”.
func ShellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_@%+=:,./-", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
