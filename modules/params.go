package modules

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/overlordhq/overlord/status"
)

// Type is the declared type of a parameter. A parameter may accept several
// types, written "string|list".
type Type string

// Parameter types.
const (
	String   Type = "string"
	Int      Type = "int"
	Float    Type = "float"
	Bool     Type = "bool"
	List     Type = "list"
	Object   Type = "object"
	Duration Type = "duration" // a Go duration string ("1m30s") or a number of seconds
	Any      Type = "any"
)

// Param declares one parameter of a method.
type Param struct {
	Name     string `json:"name"`
	Type     Type   `json:"type"`
	Required bool   `json:"required"`
	Default  any    `json:"default,omitempty"`
	Doc      string `json:"doc"`
	// Max, if positive, is the largest number the parameter takes: a
	// larger one is bad_args, naming it. Built-in modules only (it does
	// not travel in descriptions: say it in Doc too).
	Max int64 `json:"-"`
}

// accepts reports whether p's type includes t.
func (p Param) accepts(t Type) bool {
	for _, s := range strings.Split(string(p.Type), "|") {
		if Type(s) == t {
			return true
		}
	}
	return false
}

// check returns nil if v is of p's type, else why not.
func (p Param) check(v any) error {
	for _, s := range strings.Split(string(p.Type), "|") {
		if isType(Type(s), v) {
			return nil
		}
	}
	return fmt.Errorf("want %s, got %s", p.Type, describe(v))
}

func isType(t Type, v any) bool {
	switch t {
	case Any:
		return true
	case String:
		_, ok := v.(string)
		return ok
	case Int:
		f, ok := number(v)
		return ok && f == math.Trunc(f) && math.Abs(f) <= 1<<53
	case Float:
		_, ok := number(v)
		return ok
	case Bool:
		_, ok := v.(bool)
		return ok
	case List:
		_, ok := v.([]any)
		return ok
	case Object:
		_, ok := v.(map[string]any)
		return ok
	case Duration:
		if f, ok := number(v); ok {
			return f >= 0 && !math.IsInf(f, 0)
		}
		if s, ok := v.(string); ok {
			d, err := time.ParseDuration(s)
			return err == nil && d >= 0
		}
	}
	return false
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, !math.IsNaN(n)
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

// describe names the JSON type of v with a short quote of it, for errors.
func describe(v any) string {
	var kind string
	switch v.(type) {
	case nil:
		return "null"
	case string:
		kind = "string"
	case bool:
		kind = "bool"
	case float64, int, int64, json.Number:
		kind = "number"
	case []any:
		return "list"
	case map[string]any:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
	q := fmt.Sprintf("%v", v)
	if len(q) > 40 {
		q = q[:40] + "..."
	}
	if kind == "string" {
		return fmt.Sprintf("string %q", q)
	}
	return kind + " " + q
}

// Bind checks named and positional arguments against m's parameters and
// returns them as Args, with defaults filled in. Positional values fill
// parameters in declaration order. Any mismatch is an *status.Error of kind
// bad_args naming the parameter and the problem.
func (m *Method) Bind(named map[string]any, positional []any) (Args, error) {
	bad := func(format string, a ...any) error {
		return status.Errorf(status.KindBadArgs, "%s: %s", m.Name, fmt.Sprintf(format, a...))
	}
	if len(positional) > len(m.Params) {
		return nil, bad("takes at most %d argument(s) (%s), got %d", len(m.Params), m.paramNames(), len(positional))
	}
	args := make(Args, len(m.Params))
	for i, v := range positional {
		args[m.Params[i].Name] = v
	}
	for k, v := range named {
		p, ok := m.param(k)
		if !ok {
			return nil, bad("unknown parameter %q (have: %s)", k, m.paramNames())
		}
		if _, dup := args[k]; dup {
			return nil, bad("parameter %s given twice", p.Name)
		}
		args[k] = v
	}
	for _, p := range m.Params {
		v, ok := args[p.Name]
		if !ok {
			if p.Required {
				return nil, bad("missing required parameter %s (%s)", p.Name, p.Type)
			}
			if p.Default != nil {
				args[p.Name] = p.Default
			}
			continue
		}
		if err := p.check(v); err != nil {
			return nil, bad("parameter %s: %v", p.Name, err)
		}
		if n, ok := number(v); ok && p.Max > 0 && n > float64(p.Max) {
			return nil, bad("parameter %s: at most %d, got %.0f", p.Name, p.Max, n)
		}
	}
	return args, nil
}

func (m *Method) param(name string) (Param, bool) {
	for _, p := range m.Params {
		if p.Name == name {
			return p, true
		}
	}
	return Param{}, false
}

func (m *Method) paramNames() string {
	if len(m.Params) == 0 {
		return "none"
	}
	names := make([]string, len(m.Params))
	for i, p := range m.Params {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

// Args are a method's arguments after Bind. Accessors return the zero value
// for an absent optional parameter; Bind has already checked every type.
type Args map[string]any

// Has reports whether the parameter was given or has a default.
func (a Args) Has(name string) bool { _, ok := a[name]; return ok }

// Value returns the raw value.
func (a Args) Value(name string) any { return a[name] }

// String returns a string parameter.
func (a Args) String(name string) string { s, _ := a[name].(string); return s }

// Float returns a number parameter.
func (a Args) Float(name string) float64 { f, _ := number(a[name]); return f }

// Int returns an int parameter.
func (a Args) Int(name string) int64 { f, _ := number(a[name]); return int64(f) }

// Bool returns a bool parameter.
func (a Args) Bool(name string) bool { b, _ := a[name].(bool); return b }

// List returns a list parameter.
func (a Args) List(name string) []any { l, _ := a[name].([]any); return l }

// Object returns an object parameter.
func (a Args) Object(name string) map[string]any { o, _ := a[name].(map[string]any); return o }

// Duration returns a duration parameter (a duration string or seconds).
func (a Args) Duration(name string) time.Duration {
	switch v := a[name].(type) {
	case string:
		d, _ := time.ParseDuration(v)
		return d
	default:
		f, _ := number(v)
		return time.Duration(f * float64(time.Second))
	}
}
