package modules_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/status"
)

// fakeModule is a module made of function fields.
type fakeModule struct {
	name    string
	methods []*modules.Method
}

func (m fakeModule) Name() string               { return m.name }
func (m fakeModule) Doc() string                { return "the " + m.name + " module" }
func (m fakeModule) Methods() []*modules.Method { return m.methods }

func newFakeRegistry(t *testing.T, runs *atomic.Int32) *modules.Registry {
	t.Helper()
	count := func(f func(context.Context, modules.Args) (any, error)) func(context.Context, modules.Args) (any, error) {
		return func(ctx context.Context, a modules.Args) (any, error) {
			runs.Add(1)
			return f(ctx, a)
		}
	}
	r := modules.NewRegistry()
	mods := []modules.Module{
		fakeModule{name: "fake", methods: []*modules.Method{
			{Name: "ok", Params: []modules.Param{{Name: "n", Type: modules.Int, Required: true}},
				Run: count(func(_ context.Context, a modules.Args) (any, error) { return a.Int("n") * 2, nil })},
			{Name: "plain_error", Run: count(func(context.Context, modules.Args) (any, error) {
				return nil, errors.New("disk full")
			})},
			{Name: "wrapped_error", Run: count(func(context.Context, modules.Args) (any, error) {
				return nil, fmt.Errorf("open: %w", errors.New("no such file"))
			})},
			{Name: "denied", Run: count(func(context.Context, modules.Args) (any, error) {
				return nil, status.Errorf(status.KindDenied, "not you")
			})},
			{Name: "result_and_error", Run: count(func(context.Context, modules.Args) (any, error) {
				return map[string]any{"exit_code": 3}, errors.New("exit status 3")
			})},
			{Name: "panics", Run: count(func(context.Context, modules.Args) (any, error) {
				panic("boom")
			})},
			{Name: "nil_deref", Run: count(func(context.Context, modules.Args) (any, error) {
				var m map[string]*int
				return *m["x"], nil
			})},
			{Name: "ctx", Run: count(func(ctx context.Context, _ modules.Args) (any, error) {
				return ctx.Value(ctxKey{}), nil
			})},
		}},
		fakeModule{name: "other"},
	}
	for _, m := range mods {
		if err := r.Add(m); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

type ctxKey struct{}

func TestRegistryCall(t *testing.T) {
	var runs atomic.Int32
	r := newFakeRegistry(t, &runs)
	tests := []struct {
		name       string
		module     string
		method     string
		named      map[string]any
		positional []any
		want       any
		kind       status.Kind // "" for success
		msg        string
		ran        bool
	}{
		{name: "ok positional", module: "fake", method: "ok", positional: []any{21.0}, want: int64(42), ran: true},
		{name: "ok named", module: "fake", method: "ok", named: map[string]any{"n": 2.0}, want: int64(4), ran: true},
		{name: "unknown module", module: "nosuch", method: "ok",
			kind: status.KindUnknownModule, msg: `no module "nosuch" (have: fake, other)`},
		{name: "unknown method", module: "fake", method: "nosuch",
			kind: status.KindUnknownMethod, msg: `module "fake" has no method "nosuch" (have: ok, plain_error,`},
		{name: "method of a module without methods", module: "other", method: "x",
			kind: status.KindUnknownMethod, msg: `module "other" has no method "x"`},
		{name: "bad args do not run", module: "fake", method: "ok", positional: []any{2.5},
			kind: status.KindBadArgs, msg: "ok: parameter n: want int, got number 2.5"},
		{name: "missing args do not run", module: "fake", method: "ok",
			kind: status.KindBadArgs, msg: "missing required parameter n"},
		{name: "plain error is module_error", module: "fake", method: "plain_error",
			kind: status.KindModuleError, msg: "disk full", ran: true},
		{name: "wrapped error is module_error", module: "fake", method: "wrapped_error",
			kind: status.KindModuleError, msg: "open: no such file", ran: true},
		{name: "status error keeps its kind", module: "fake", method: "denied",
			kind: status.KindDenied, msg: "not you", ran: true},
		{name: "result comes with error", module: "fake", method: "result_and_error",
			want: map[string]any{"exit_code": 3}, kind: status.KindModuleError, msg: "exit status 3", ran: true},
		{name: "panic is internal", module: "fake", method: "panics",
			kind: status.KindInternal, msg: "fake.panics panicked: boom", ran: true},
		{name: "runtime panic is internal", module: "fake", method: "nil_deref",
			kind: status.KindInternal, msg: "fake.nil_deref panicked: runtime error", ran: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := runs.Load()
			got, err := r.Call(context.Background(), tt.module, tt.method, tt.named, tt.positional)
			if ran := runs.Load() != before; ran != tt.ran {
				t.Errorf("method ran: %v, want %v", ran, tt.ran)
			}
			if tt.kind == "" {
				if err != nil {
					t.Fatalf("Call: %v", err)
				}
			} else {
				var se *status.Error
				if !errors.As(err, &se) {
					t.Fatalf("error %v (%T) is not a *status.Error", err, err)
				}
				if se.Kind != tt.kind {
					t.Errorf("kind %q, want %q (%v)", se.Kind, tt.kind, se)
				}
				if !strings.Contains(se.Message, tt.msg) {
					t.Errorf("message %q does not say %q", se.Message, tt.msg)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("result %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestRegistryCallPassesContext(t *testing.T) {
	var runs atomic.Int32
	r := newFakeRegistry(t, &runs)
	ctx := context.WithValue(context.Background(), ctxKey{}, "mine")
	got, err := r.Call(ctx, "fake", "ctx", nil, nil)
	if err != nil || got != "mine" {
		t.Errorf("Call = %v, %v; want the caller's context to reach the method", got, err)
	}
}

func TestRegistryAddTwice(t *testing.T) {
	r := modules.NewRegistry()
	if err := r.Add(fakeModule{name: "a"}); err != nil {
		t.Fatal(err)
	}
	err := r.Add(fakeModule{name: "a"})
	if err == nil || !strings.Contains(err.Error(), `"a" registered twice`) {
		t.Errorf("second Add = %v, want a refusal", err)
	}
}

func TestRegistryDescribe(t *testing.T) {
	var runs atomic.Int32
	r := newFakeRegistry(t, &runs)
	if got := strings.Join(r.Names(), ","); got != "fake,other" {
		t.Errorf("Names = %s", got)
	}
	all := r.DescribeAll()
	if len(all) != 2 || all[0].Name != "fake" || all[1].Name != "other" {
		t.Fatalf("DescribeAll = %+v", all)
	}
	info, err := r.Describe("fake")
	if err != nil {
		t.Fatal(err)
	}
	if info.Doc != "the fake module" || len(info.Methods) != 8 {
		t.Errorf("Describe(fake) = %+v", info)
	}
	raw, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Methods []struct {
			Name   string            `json:"name"`
			Params []json.RawMessage `json:"params"`
		} `json:"methods"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Methods[0].Name != "ok" || len(doc.Methods[0].Params) != 1 {
		t.Errorf("method ok described as %s", raw)
	}
	if !strings.Contains(string(raw), `"name":"plain_error","doc":"","params":[]`) {
		t.Errorf("a method without parameters must list \"params\": [] (not null): %s", raw)
	}
	if _, err := r.Describe("nosuch"); status.KindOf(err) != status.KindUnknownModule {
		t.Errorf("Describe(nosuch) = %v, want unknown_module", err)
	}
}

// The registry is used by concurrent calls; run with -race.
func TestRegistryConcurrent(t *testing.T) {
	var runs atomic.Int32
	r := newFakeRegistry(t, &runs)
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for j := range 50 {
				if _, err := r.Call(context.Background(), "fake", "ok", nil, []any{float64(i * j)}); err != nil {
					t.Error(err)
				}
				r.DescribeAll()
			}
		}()
	}
	for range 8 {
		<-done
	}
	if runs.Load() != 400 {
		t.Errorf("%d runs, want 400", runs.Load())
	}
}
