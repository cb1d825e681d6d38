// Package target resolves target expressions to minion names.
//
// An expression is comma-separated terms, each of them one of:
//
//   - a pattern on minion names: a shell glob (web*, db?, db[a-c],
//     web[!3], *.example.org) in which a bracket holding only digits,
//     commas and dashes, with at least one comma or dash, is a numeric
//     range as clush, pdsh and Slurm write them (web[1-10], web[01-10,15]);
//   - @group, the members of a group;
//   - failed:JOBID or ok:JOBID, the minions whose entry in a finished job
//     failed or succeeded (JOBID may be a unique prefix);
//
// any of them with ! in front to exclude. The result is the union of the
// including terms minus the excluded ones; an expression of exclusions
// only starts from every minion.
//
// A numeric range matches a number written in full: [1-10] matches 1 to
// 10 written without leading zeros, and a bound written with a leading
// zero sets the width, so [01-10] matches 01 to 10 and not 1. A bracket
// with digits only and no comma or dash ([13]) is a glob class, one
// character among those listed; so is any other bracket. A range is
// never expanded: a name matches if its digits at that place, read as a
// number, are in the range, so [1-100000000] costs no more than [1-3].
// Ranges and globs combine as if each range were expanded into globs:
// web[1-3]* matches what web1*, web2* and web3* match.
package target

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// ErrUnknownGroup is returned for @group naming no group.
var ErrUnknownGroup = errors.New("unknown group")

// ErrNoJobs is returned for failed:ID or ok:ID when the expression is
// resolved without access to jobs (Sources.Job is nil).
var ErrNoJobs = errors.New("failed:JOBID and ok:JOBID cannot be used here")

// Outcomes of a job term.
const (
	Failed = "failed"
	OK     = "ok"
)

// Term is one term of an expression.
type Term struct {
	Exclude bool
	Group   string // set for @group
	Glob    string // set for a pattern on names ([!...] written as [^...])
	Job     string // set for failed:JOBID or ok:JOBID: the job ID or its prefix
	Outcome string // with Job: Failed or OK
}

var jobIDRE = regexp.MustCompile(`^[0-9A-Fa-f-]+$`)

// Parse checks an expression and returns its terms.
func Parse(expr string) ([]Term, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, errors.New("empty target")
	}
	var terms []Term
	for _, raw := range splitTerms(expr) {
		s := strings.TrimSpace(raw)
		var t Term
		if strings.HasPrefix(s, "!") {
			t.Exclude = true
			s = strings.TrimSpace(s[1:])
		}
		switch {
		case s == "":
			return nil, fmt.Errorf("target %q has an empty term", expr)
		case strings.IndexFunc(s, unicode.IsSpace) >= 0:
			return nil, fmt.Errorf("target %q: terms are separated by commas, not spaces (try %q)", expr, commaSeparated(expr))
		case strings.HasPrefix(s, "!"):
			return nil, fmt.Errorf("target %q: %q excludes twice", expr, raw)
		case strings.HasPrefix(s, "@"):
			t.Group = s[1:]
			if t.Group == "" || strings.ContainsAny(t.Group, "*?[]@!:") {
				return nil, fmt.Errorf("target %q: bad group name %q", expr, s)
			}
		case strings.Contains(s, ":"):
			prefix, id, _ := strings.Cut(s, ":")
			if prefix != Failed && prefix != OK {
				return nil, fmt.Errorf("%s: minion names have no ':'; the only prefixes are failed:JOBID and ok:JOBID", where(expr, s))
			}
			if !jobIDRE.MatchString(id) {
				return nil, fmt.Errorf("%s: want %s:JOBID with a job ID or its prefix, as 'overlord job list' shows them", where(expr, s), prefix)
			}
			t.Job, t.Outcome = strings.ToLower(id), prefix
		default:
			// Shell-style negated classes, [!...], are path.Match's [^...].
			glob := strings.ReplaceAll(s, "[!", "[^")
			if _, err := compile(glob); err != nil {
				return nil, fmt.Errorf("target %q: bad glob %q: %w", expr, s, err)
			}
			t.Glob = glob
		}
		terms = append(terms, t)
	}
	return terms, nil
}

// splitTerms splits an expression at the commas that are not inside a
// bracket: web[1-3,7],db1 is two terms.
func splitTerms(expr string) []string {
	var terms []string
	start, inBracket := 0, false
	for i := 0; i < len(expr); i++ {
		switch expr[i] {
		case '\\':
			i++
		case '[':
			inBracket = true
		case ']':
			inBracket = false
		case ',':
			if !inBracket {
				terms = append(terms, expr[start:i])
				start = i + 1
			}
		}
	}
	return append(terms, expr[start:])
}

// commaSeparated rewrites an expression whose terms were separated by
// spaces with commas instead, for a hint.
func commaSeparated(expr string) string {
	var parts []string
	for _, raw := range splitTerms(expr) {
		s := strings.TrimSpace(raw)
		if rest, ok := strings.CutPrefix(s, "!"); ok {
			s = "!" + strings.TrimSpace(rest)
		}
		if s != "" {
			parts = append(parts, strings.Fields(s)...)
		}
	}
	return strings.Join(parts, ",")
}

// Sources are what an expression is resolved against.
type Sources struct {
	// Names are the registered minions.
	Names []string
	// Groups maps a group's name to its members.
	Groups map[string][]string
	// Job returns, for failed:ID and ok:ID, the minions whose entry in the
	// job ID (or the one job whose ID starts with it) succeeded and those
	// whose entry did not. If nil, such terms are an error (ErrNoJobs).
	Job func(id string) (ok, failed []string, err error)
}

// Resolve returns the names among names that expr selects, sorted;
// groups maps a group's name to its members. failed:ID and ok:ID are an
// error: use ResolveIn with Sources.Job for them.
func Resolve(expr string, names []string, groups map[string][]string) ([]string, error) {
	return ResolveIn(expr, Sources{Names: names, Groups: groups})
}

// ResolveIn returns the names among src.Names that expr selects, sorted
// and distinct.
func ResolveIn(expr string, src Sources) ([]string, error) {
	terms, err := Parse(expr)
	if err != nil {
		return nil, err
	}
	known := make(map[string]bool, len(src.Names))
	for _, n := range src.Names {
		known[n] = true
	}
	included, excluded := make(map[string]bool), make(map[string]bool)
	onlyExcludes := true
	for _, t := range terms {
		if !t.Exclude {
			onlyExcludes = false
		}
	}
	if onlyExcludes {
		for _, n := range src.Names {
			included[n] = true
		}
	}
	for _, t := range terms {
		var matched []string
		switch {
		case t.Group != "":
			members, ok := src.Groups[t.Group]
			if !ok {
				return nil, fmt.Errorf("@%s: %w", t.Group, ErrUnknownGroup)
			}
			for _, m := range members {
				if known[m] {
					matched = append(matched, m)
				}
			}
		case t.Job != "":
			if src.Job == nil {
				return nil, fmt.Errorf("%s:%s: %w", t.Outcome, t.Job, ErrNoJobs)
			}
			ok, failed, err := src.Job(t.Job)
			if err != nil {
				return nil, fmt.Errorf("%s:%s: %w", t.Outcome, t.Job, err)
			}
			members := failed
			if t.Outcome == OK {
				members = ok
			}
			for _, m := range members {
				if known[m] {
					matched = append(matched, m)
				}
			}
		default:
			p, err := compile(t.Glob)
			if err != nil {
				return nil, err // Parse checked it
			}
			for _, n := range src.Names {
				if p.match(n) {
					matched = append(matched, n)
				}
			}
		}
		set := included
		if t.Exclude {
			set = excluded
		}
		for _, m := range matched {
			set[m] = true
		}
	}
	out := make([]string, 0, len(included))
	for n := range included {
		if !excluded[n] {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// PlainNames returns the names that expr includes by name alone: its
// terms without a glob, a range, @ or ! (web1 in 'web1,web[2-3],!db1').
// Such a name that no minion has is likely a typo.
func PlainNames(expr string) []string {
	terms, err := Parse(expr)
	if err != nil {
		return nil
	}
	var out []string
	for _, t := range terms {
		if !t.Exclude && t.Glob != "" && !strings.ContainsAny(t.Glob, `*?[\`) {
			out = append(out, t.Glob)
		}
	}
	return out
}

// BareGroups returns the groups that expr names without their @: the
// including terms that are plain names (no glob or range) and that name
// a group. For a hint when a target matches nothing.
func BareGroups(expr string, groups map[string][]string) []string {
	terms, err := Parse(expr)
	if err != nil {
		return nil
	}
	var out []string
	for _, t := range terms {
		if t.Exclude || t.Glob == "" || strings.ContainsAny(t.Glob, `*?[\`) {
			continue
		}
		if _, ok := groups[t.Glob]; ok {
			out = append(out, t.Glob)
		}
	}
	return out
}

// pattern is a compiled glob with numeric ranges.
type pattern struct {
	glob   string  // the glob itself, matched by path.Match if it has no range
	tokens []token // set if it has a range
}

type tokenKind uint8

const (
	literal tokenKind = iota
	anyChar           // ?
	anyRun            // *
	class             // [...]
	numbers           // a numeric range
)

type token struct {
	kind  tokenKind
	r     rune        // literal
	class string      // class: "[...]" for path.Match
	spans []rangeSpan // numbers
}

// rangeSpan is one item of a numeric range, N or N-M: lo to hi written
// with at least width digits (0: no leading zeros).
type rangeSpan struct {
	lo, hi uint64
	width  int
}

// maxRangeDigits bounds the digits of a range's bounds, so that they fit
// in a uint64.
const maxRangeDigits = 18

// compile parses a glob in which brackets may be numeric ranges.
func compile(glob string) (*pattern, error) {
	p := &pattern{glob: glob}
	hasRange := false
	rs := []rune(glob)
	for i := 0; i < len(rs); i++ {
		switch rs[i] {
		case '\\':
			if i+1 == len(rs) {
				return nil, path.ErrBadPattern
			}
			i++
			p.tokens = append(p.tokens, token{kind: literal, r: rs[i]})
		case '*':
			p.tokens = append(p.tokens, token{kind: anyRun})
		case '?':
			p.tokens = append(p.tokens, token{kind: anyChar})
		case '[':
			end := closingBracket(rs, i)
			if end < 0 {
				return nil, path.ErrBadPattern
			}
			content := string(rs[i+1 : end])
			if isRange(content) {
				spans, err := parseRange(content)
				if err != nil {
					return nil, err
				}
				p.tokens = append(p.tokens, token{kind: numbers, spans: spans})
				hasRange = true
			} else {
				c := "[" + content + "]"
				if _, err := path.Match(c, ""); err != nil {
					return nil, err
				}
				p.tokens = append(p.tokens, token{kind: class, class: c})
			}
			i = end
		case ']':
			return nil, path.ErrBadPattern
		default:
			p.tokens = append(p.tokens, token{kind: literal, r: rs[i]})
		}
	}
	if !hasRange {
		// path.Match is the reference for plain globs; check it agrees
		// that the glob is well formed.
		if _, err := path.Match(glob, ""); err != nil {
			return nil, err
		}
		p.tokens = nil
	}
	return p, nil
}

// closingBracket returns the index of the ] that closes the [ at open, or
// -1. A backslash escapes the next character, as in path.Match.
func closingBracket(rs []rune, open int) int {
	for j := open + 1; j < len(rs); j++ {
		switch rs[j] {
		case '\\':
			j++
		case ']':
			return j
		}
	}
	return -1
}

// isRange reports whether a bracket's content is a numeric range: only
// digits, commas and dashes, with at least one comma or dash.
func isRange(content string) bool {
	if content == "" || strings.Trim(content, "0123456789,-") != "" {
		return false
	}
	return strings.ContainsAny(content, ",-")
}

func parseRange(content string) ([]rangeSpan, error) {
	bad := func(why string) error {
		return fmt.Errorf("numeric range [%s]: %s (want N, N-M or a list of them: [1-10], [01-10,15])", content, why)
	}
	var spans []rangeSpan
	for _, item := range strings.Split(content, ",") {
		loS, hiS, isSpan := strings.Cut(item, "-")
		if !isSpan {
			hiS = loS
		}
		if loS == "" || hiS == "" || strings.Contains(hiS, "-") {
			return nil, bad(fmt.Sprintf("%q is not a number or N-M", item))
		}
		if len(loS) > maxRangeDigits || len(hiS) > maxRangeDigits {
			return nil, bad(fmt.Sprintf("%q: numbers of at most %d digits", item, maxRangeDigits))
		}
		lo, _ := strconv.ParseUint(loS, 10, 64)
		hi, _ := strconv.ParseUint(hiS, 10, 64)
		if lo > hi {
			return nil, bad(fmt.Sprintf("%s goes down; write %s-%s", item, hiS, loS))
		}
		width := 0
		for _, b := range []string{loS, hiS} {
			if len(b) > 1 && b[0] == '0' && len(b) > width {
				width = len(b)
			}
		}
		spans = append(spans, rangeSpan{lo: lo, hi: hi, width: width})
	}
	return spans, nil
}

// match reports whether name matches the pattern.
func (p *pattern) match(name string) bool {
	if p.tokens == nil {
		ok, _ := path.Match(p.glob, name)
		return ok
	}
	rs := []rune(name)
	// memo[t*(len(rs)+1)+i]: 0 unknown, 1 matches, 2 does not: tokens
	// from t on against rs from i on. Bounded by tokens × runes.
	memo := make([]uint8, (len(p.tokens)+1)*(len(rs)+1))
	var m func(t, i int) bool
	m = func(t, i int) bool {
		k := t*(len(rs)+1) + i
		if memo[k] != 0 {
			return memo[k] == 1
		}
		ok := p.matchAt(t, i, rs, m)
		memo[k] = 2
		if ok {
			memo[k] = 1
		}
		return ok
	}
	return m(0, 0)
}

func (p *pattern) matchAt(t, i int, rs []rune, m func(t, i int) bool) bool {
	if t == len(p.tokens) {
		return i == len(rs)
	}
	tok := p.tokens[t]
	switch tok.kind {
	case anyRun:
		for j := i; j <= len(rs); j++ {
			if m(t+1, j) {
				return true
			}
			if j < len(rs) && rs[j] == '/' {
				return false // as path.Match: * does not cross /
			}
		}
		return false
	case numbers:
		end := i
		for end < len(rs) && end-i < maxRangeDigits+1 && rs[end] >= '0' && rs[end] <= '9' {
			end++
		}
		for j := i + 1; j <= end; j++ {
			if tok.inRange(string(rs[i:j])) && m(t+1, j) {
				return true
			}
		}
		return false
	}
	if i == len(rs) {
		return false
	}
	switch tok.kind {
	case literal:
		if rs[i] != tok.r {
			return false
		}
	case anyChar:
		if rs[i] == '/' {
			return false
		}
	case class:
		if ok, _ := path.Match(tok.class, string(rs[i])); !ok {
			return false
		}
	}
	return m(t+1, i+1)
}

// inRange reports whether digits, written as they are, is a number of the
// range: its value is in a span, and it is written with the span's width
// (leading zeros up to the width, none beyond).
func (tok token) inRange(digits string) bool {
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return false
	}
	plain := strconv.FormatUint(n, 10)
	for _, s := range tok.spans {
		if n < s.lo || n > s.hi {
			continue
		}
		want := plain
		if pad := s.width - len(plain); pad > 0 {
			want = strings.Repeat("0", pad) + plain
		}
		if digits == want {
			return true
		}
	}
	return false
}

// where names the term s of the target expr in an error: the target
// alone when the term is all of it, so it is not quoted twice.
func where(expr, s string) string {
	if strings.TrimSpace(expr) == s {
		return fmt.Sprintf("target %q", expr)
	}
	return fmt.Sprintf("target %q: %q", expr, s)
}
