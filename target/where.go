package target

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Cond is one --where condition on a minion's cached facts: KEY OP VALUE
// with OP one of = != < <= > >= ~ (a regular expression).
type Cond struct {
	Key   string
	Op    string
	Value string
	re    *regexp.Regexp
	num   float64
	isNum bool
}

var whereRE = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(<=|>=|!=|==|=|<|>|~)\s*(.*?)\s*$`)

// ParseWhere parses a condition such as "os=debian", "memory_bytes>=8e9"
// or "hostname~^web[0-9]+$".
func ParseWhere(s string) (Cond, error) {
	m := whereRE.FindStringSubmatch(s)
	if m == nil {
		return Cond{}, fmt.Errorf("bad --where %q: want KEY OP VALUE with OP one of = != < <= > >= ~", s)
	}
	c := Cond{Key: m[1], Op: m[2], Value: m[3]}
	if c.Op == "==" {
		c.Op = "="
	}
	switch c.Op {
	case "~":
		re, err := regexp.Compile(c.Value)
		if err != nil {
			return Cond{}, fmt.Errorf("bad --where %q: %v", s, err)
		}
		c.re = re
	case "<", "<=", ">", ">=":
		f, err := strconv.ParseFloat(c.Value, 64)
		if err != nil {
			return Cond{}, fmt.Errorf("bad --where %q: %s compares numbers, and %q is not one", s, c.Op, c.Value)
		}
		c.num, c.isNum = f, true
	default:
		if f, err := strconv.ParseFloat(c.Value, 64); err == nil {
			c.num, c.isNum = f, true
		}
	}
	return c, nil
}

// Match reports whether facts satisfy the condition. A minion without the
// fact does not match (not even !=). A key may reach into objects with
// dots ("disk.root"); a list matches = and ~ if any element does.
func (c Cond) Match(facts map[string]any) bool {
	v, ok := lookup(facts, c.Key)
	if !ok {
		return false
	}
	if list, ok := v.([]any); ok {
		switch c.Op {
		case "=", "~": // some element matches
			for _, e := range list {
				if c.matchOne(e) {
					return true
				}
			}
			return false
		case "!=": // no element equals
			for _, e := range list {
				if !c.matchOne(e) {
					return false
				}
			}
			return true
		}
	}
	return c.matchOne(v)
}

func (c Cond) matchOne(v any) bool {
	s := fmt.Sprint(v)
	if f, ok := v.(float64); ok {
		s = strconv.FormatFloat(f, 'f', -1, 64) // 25276514304, not 2.5276514304e+10
	}
	f, isNum := number(v)
	switch c.Op {
	case "~":
		return c.re.MatchString(s)
	case "=":
		if c.isNum && isNum {
			return f == c.num
		}
		return strings.EqualFold(s, c.Value)
	case "!=":
		if c.isNum && isNum {
			return f != c.num
		}
		return !strings.EqualFold(s, c.Value)
	}
	if !isNum {
		return false
	}
	switch c.Op {
	case "<":
		return f < c.num
	case "<=":
		return f <= c.num
	case ">":
		return f > c.num
	default: // ">="
		return f >= c.num
	}
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil
	}
	return 0, false
}

func lookup(facts map[string]any, key string) (any, bool) {
	var cur any = facts
	for _, part := range strings.Split(key, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}
