package modules_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/status"
)

// copyMethod has required, defaulted and plain optional parameters.
var copyMethod = &modules.Method{
	Name: "copy",
	Params: []modules.Param{
		{Name: "src", Type: modules.String, Required: true},
		{Name: "dst", Type: modules.String, Required: true},
		{Name: "mode", Type: modules.Int, Default: 420},
		{Name: "force", Type: modules.Bool},
	},
}

func TestBind(t *testing.T) {
	tests := []struct {
		name       string
		named      map[string]any
		positional []any
		want       modules.Args
		errMsg     string // if set, Bind must fail with bad_args saying this
	}{
		{name: "positional fill in order", positional: []any{"/a", "/b"},
			want: modules.Args{"src": "/a", "dst": "/b", "mode": 420}},
		{name: "all positional", positional: []any{"/a", "/b", 384.0, true},
			want: modules.Args{"src": "/a", "dst": "/b", "mode": 384.0, "force": true}},
		{name: "named", named: map[string]any{"dst": "/b", "src": "/a"},
			want: modules.Args{"src": "/a", "dst": "/b", "mode": 420}},
		{name: "positional then named", named: map[string]any{"force": true}, positional: []any{"/a", "/b"},
			want: modules.Args{"src": "/a", "dst": "/b", "mode": 420, "force": true}},
		{name: "named overrides default", named: map[string]any{"mode": 0.0}, positional: []any{"/a", "/b"},
			want: modules.Args{"src": "/a", "dst": "/b", "mode": 0.0}},
		{name: "too many positional", positional: []any{"/a", "/b", 1.0, true, "x"},
			errMsg: "copy: takes at most 4 argument(s) (src, dst, mode, force), got 5"},
		{name: "unknown parameter", named: map[string]any{"owner": "root"}, positional: []any{"/a", "/b"},
			errMsg: `unknown parameter "owner" (have: src, dst, mode, force)`},
		{name: "given twice", named: map[string]any{"src": "/c"}, positional: []any{"/a", "/b"},
			errMsg: "parameter src given twice"},
		{name: "missing first required", named: map[string]any{"dst": "/b"},
			errMsg: "missing required parameter src (string)"},
		{name: "missing second required", positional: []any{"/a"},
			errMsg: "missing required parameter dst (string)"},
		{name: "nothing", errMsg: "missing required parameter src"},
		{name: "wrong type positional", positional: []any{"/a", 7.0},
			errMsg: "parameter dst: want string, got number 7"},
		{name: "wrong type named", named: map[string]any{"force": "yes"}, positional: []any{"/a", "/b"},
			errMsg: `parameter force: want bool, got string "yes"`},
		{name: "null for required", positional: []any{nil, "/b"},
			errMsg: "parameter src: want string, got null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := copyMethod.Bind(tt.named, tt.positional)
			if tt.errMsg != "" {
				checkBadArgs(t, err, tt.errMsg)
				if got != nil {
					t.Errorf("Bind returned args %v with its error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Bind: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Bind = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func checkBadArgs(t *testing.T, err error, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want bad_args %q", msg)
	}
	var se *status.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a *status.Error", err, err)
	}
	if se.Kind != status.KindBadArgs {
		t.Errorf("kind %q, want bad_args", se.Kind)
	}
	if !strings.Contains(se.Message, msg) {
		t.Errorf("message %q does not say %q", se.Message, msg)
	}
}

func TestBindDoesNotChangeInput(t *testing.T) {
	named := map[string]any{"dst": "/b"}
	positional := []any{"/a"}
	if _, err := copyMethod.Bind(named, positional); err != nil {
		t.Fatal(err)
	}
	if len(named) != 1 || named["dst"] != "/b" || len(positional) != 1 {
		t.Errorf("Bind changed its input: %v %v", named, positional)
	}
}

func TestBindNoParams(t *testing.T) {
	m := &modules.Method{Name: "ping"}
	if _, err := m.Bind(nil, nil); err != nil {
		t.Errorf("Bind(nothing) = %v", err)
	}
	_, err := m.Bind(nil, []any{1.0})
	checkBadArgs(t, err, "takes at most 0 argument(s) (none), got 1")
	_, err = m.Bind(map[string]any{"x": 1.0}, nil)
	checkBadArgs(t, err, `unknown parameter "x" (have: none)`)
}

// TestBindTypes checks every parameter type with values as they arrive
// from JSON (float64, string, bool, []any, map[string]any, nil) and as Go
// callers pass them (int).
func TestBindTypes(t *testing.T) {
	tests := []struct {
		typ    modules.Type
		good   []any
		bad    []any
		badMsg string // what the error says about the wanted type
	}{
		{modules.String, []any{"x", "", "42", "1m"},
			[]any{42.0, true, nil, []any{"x"}, map[string]any{}}, "want string"},
		{modules.Int, []any{3.0, 0.0, -7.0, 3, int64(9), float64(1 << 53), -float64(1 << 53)},
			[]any{2.5, 0.1, -1.5, 1e300, float64(1<<53) * 2, "3", true, nil, math.NaN()}, "want int"},
		{modules.Float, []any{2.5, 3.0, -0.5, 7, 1e300},
			[]any{"2.5", true, nil, math.NaN(), []any{1.0}}, "want float"},
		{modules.Bool, []any{true, false},
			[]any{"true", 1.0, 0.0, nil}, "want bool"},
		{modules.List, []any{[]any{}, []any{"a", 1.0, nil}},
			[]any{"a", "[]", map[string]any{}, nil, 1.0}, "want list"},
		{modules.Object, []any{map[string]any{}, map[string]any{"a": 1.0}},
			[]any{[]any{}, "{}", nil, 1.0}, "want object"},
		{modules.Duration, []any{"1m30s", "0s", "250ms", "2h", 90.0, 1.5, 0.0, 3},
			[]any{"-1s", "90", "soon", "", -1.0, math.Inf(1), true, nil, []any{}}, "want duration"},
		{"string|list", []any{"ls -l", []any{"ls", "-l"}, []any{}},
			[]any{3.0, true, nil, map[string]any{}}, "want string|list"},
		{modules.Any, []any{"x", 1.0, true, nil, []any{}, map[string]any{"a": []any{}}}, nil, ""},
	}
	for _, tt := range tests {
		m := &modules.Method{Name: "m", Params: []modules.Param{{Name: "p", Type: tt.typ, Required: true}}}
		for _, v := range tt.good {
			t.Run(string(tt.typ)+"/ok/"+describeValue(v), func(t *testing.T) {
				for _, bind := range []func() (modules.Args, error){
					func() (modules.Args, error) { return m.Bind(map[string]any{"p": v}, nil) },
					func() (modules.Args, error) { return m.Bind(nil, []any{v}) },
				} {
					args, err := bind()
					if err != nil {
						t.Fatalf("refused %#v: %v", v, err)
					}
					if !args.Has("p") {
						t.Errorf("args lack p")
					}
				}
			})
		}
		for _, v := range tt.bad {
			t.Run(string(tt.typ)+"/bad/"+describeValue(v), func(t *testing.T) {
				_, err := m.Bind(map[string]any{"p": v}, nil)
				checkBadArgs(t, err, "parameter p: "+tt.badMsg)
				_, err = m.Bind(nil, []any{v})
				checkBadArgs(t, err, "parameter p: "+tt.badMsg)
			})
		}
	}
}

// describeValue names a value for a subtest: its Go type and value.
func describeValue(v any) string {
	return fmt.Sprintf("%T=%v", v, v)
}

func TestArgsAccessors(t *testing.T) {
	tests := []struct {
		name string
		val  any
		get  func(modules.Args) any
		want any
	}{
		{"duration string", "1m30s", func(a modules.Args) any { return a.Duration("p") }, 90 * time.Second},
		{"duration seconds", 90.0, func(a modules.Args) any { return a.Duration("p") }, 90 * time.Second},
		{"duration fraction", 1.5, func(a modules.Args) any { return a.Duration("p") }, 1500 * time.Millisecond},
		{"duration int", 2, func(a modules.Args) any { return a.Duration("p") }, 2 * time.Second},
		{"int from float", 42.0, func(a modules.Args) any { return a.Int("p") }, int64(42)},
		{"int from int", 42, func(a modules.Args) any { return a.Int("p") }, int64(42)},
		{"float", 2.5, func(a modules.Args) any { return a.Float("p") }, 2.5},
		{"string", "x", func(a modules.Args) any { return a.String("p") }, "x"},
		{"bool", true, func(a modules.Args) any { return a.Bool("p") }, true},
		{"list", []any{"a"}, func(a modules.Args) any { return a.List("p") }, []any{"a"}},
		{"object", map[string]any{"a": 1.0}, func(a modules.Args) any { return a.Object("p") }, map[string]any{"a": 1.0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := modules.Args{"p": tt.val}
			if got := tt.get(a); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
	empty := modules.Args{}
	if empty.Has("p") || empty.String("p") != "" || empty.Int("p") != 0 || empty.Duration("p") != 0 ||
		empty.Bool("p") || empty.List("p") != nil || empty.Object("p") != nil || empty.Value("p") != nil {
		t.Error("accessors of an absent parameter do not return zero values")
	}
}
