// Package target resolves target expressions to minion names.
//
// An expression is comma-separated terms; a term is a glob on minion names
// (web*, db[1-3], *.example.org) or @group, either with ! in front to
// exclude. The result is the union of the including terms minus the
// excluded ones; an expression of exclusions only starts from every minion.
package target

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
)

// ErrUnknownGroup is returned for @group naming no group.
var ErrUnknownGroup = errors.New("unknown group")

// Term is one term of an expression.
type Term struct {
	Exclude bool
	Group   string // set for @group
	Glob    string // set for a glob
}

// Parse checks an expression and returns its terms.
func Parse(expr string) ([]Term, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, errors.New("empty target")
	}
	var terms []Term
	for _, raw := range strings.Split(expr, ",") {
		s := strings.TrimSpace(raw)
		var t Term
		if strings.HasPrefix(s, "!") {
			t.Exclude = true
			s = strings.TrimSpace(s[1:])
		}
		switch {
		case s == "":
			return nil, fmt.Errorf("target %q has an empty term", expr)
		case strings.HasPrefix(s, "!"):
			return nil, fmt.Errorf("target %q: %q excludes twice", expr, raw)
		case strings.HasPrefix(s, "@"):
			t.Group = s[1:]
			if t.Group == "" || strings.ContainsAny(t.Group, "*?[]@!") {
				return nil, fmt.Errorf("target %q: bad group name %q", expr, s)
			}
		default:
			// Shell-style negated classes, [!...], are path.Match's [^...].
			glob := strings.ReplaceAll(s, "[!", "[^")
			if _, err := path.Match(glob, ""); err != nil {
				return nil, fmt.Errorf("target %q: bad glob %q: %w", expr, s, err)
			}
			t.Glob = glob
		}
		terms = append(terms, t)
	}
	return terms, nil
}

// Resolve returns the names among names that expr selects, sorted;
// groups maps a group's name to its members.
func Resolve(expr string, names []string, groups map[string][]string) ([]string, error) {
	terms, err := Parse(expr)
	if err != nil {
		return nil, err
	}
	known := make(map[string]bool, len(names))
	for _, n := range names {
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
		for _, n := range names {
			included[n] = true
		}
	}
	for _, t := range terms {
		var matched []string
		if t.Group != "" {
			members, ok := groups[t.Group]
			if !ok {
				return nil, fmt.Errorf("@%s: %w", t.Group, ErrUnknownGroup)
			}
			for _, m := range members {
				if known[m] {
					matched = append(matched, m)
				}
			}
		} else {
			for _, n := range names {
				if ok, _ := path.Match(t.Glob, n); ok {
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
