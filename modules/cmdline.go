package modules

import (
	"encoding/json"
	"github.com/overlordhq/overlord/status"
	"regexp"
	"strings"
)

var argName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ParseCommandLine turns the words after MODULE.METHOD on a command line
// into named and positional arguments.
//
// A word key=value names a parameter when key looks like a parameter name
// and, if the method is known (m != nil), is one of its parameters; so
// `command.run 'FOO=1 make'` stays a command line. A value is converted by
// the type of the parameter it fills: a parameter that takes a string gets
// the word as written (unless the word is JSON of another type the
// parameter takes, such as a list); otherwise a word that parses as JSON is
// JSON and anything else is a string. When m is nil (a module only the
// minions know), every value is JSON if it parses and a string if not.
func ParseCommandLine(m *Method, words []string) (named map[string]any, positional []any) {
	for _, w := range words {
		if k, v, ok := splitNamed(m, w); ok {
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
		var p *Param
		if m != nil && len(positional) < len(m.Params) {
			p = &m.Params[len(positional)]
		}
		positional = append(positional, convert(p, w))
	}
	return named, positional
}

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

// CheckCommandLine reports a parameter named twice on a command line
// (a=1 a=2), which ParseCommandLine would resolve silently, last wins.
func CheckCommandLine(m *Method, words []string) error {
	seen := map[string]bool{}
	for _, w := range words {
		if k, _, ok := splitNamed(m, w); ok {
			if seen[k] {
				return status.Errorf(status.KindBadArgs, "parameter %s given twice", k)
			}
			seen[k] = true
		}
	}
	return nil
}
