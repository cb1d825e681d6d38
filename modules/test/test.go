// Package test is the test module: methods that check that a minion answers
// and behaves (ping, echo, sleep, fail, add).
package test

import (
	"context"
	"errors"
	"time"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/status"
)

// Module is the test module.
type Module struct{}

var _ modules.Module = Module{}

// Name implements modules.Module.
func (Module) Name() string { return "test" }

// Doc implements modules.Module.
func (Module) Doc() string { return "Check that a minion answers and behaves." }

// Methods implements modules.Module.
func (Module) Methods() []*modules.Method {
	return []*modules.Method{
		{Name: "ping", Doc: "Answer true.", Returns: "true", Run: ping},
		{Name: "echo", Doc: "Return the message given.", Returns: "the message",
			Params:     []modules.Param{{Name: "message", Type: modules.Any, Required: true, Doc: "any JSON value"}},
			Positional: 1, Run: echo},
		{Name: "sleep", Doc: "Sleep, then answer true; stops early if the call is cancelled.", Returns: "true",
			Params:     []modules.Param{{Name: "seconds", Type: modules.Float, Required: true, Doc: "how long to sleep"}},
			Positional: 1, Run: sleep},
		{Name: "fail", Doc: "Fail with the message given (kind module_error).",
			Params:     []modules.Param{{Name: "message", Type: modules.String, Default: "failed on purpose", Doc: "the error message"}},
			Positional: 1, Run: fail},
		{Name: "add", Doc: "Add two numbers.", Returns: "a + b",
			Params: []modules.Param{
				{Name: "a", Type: modules.Float, Required: true, Doc: "first number"},
				{Name: "b", Type: modules.Float, Required: true, Doc: "second number"},
			},
			Positional: 2,
			Run:        add},
	}
}

func ping(context.Context, modules.Args) (any, error) { return true, nil }

func echo(_ context.Context, a modules.Args) (any, error) { return a.Value("message"), nil }

func sleep(ctx context.Context, a modules.Args) (any, error) {
	secs := a.Float("seconds")
	if secs < 0 {
		return nil, status.Errorf(status.KindBadArgs, "sleep: parameter seconds: must not be negative, got %v", secs)
	}
	t := time.NewTimer(time.Duration(secs * float64(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
		return true, nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, status.Errorf(status.KindTimeout, "sleep interrupted after the call's deadline")
		}
		return nil, status.Errorf(status.KindCancelled, "sleep cancelled")
	}
}

func fail(_ context.Context, a modules.Args) (any, error) {
	return nil, errors.New(a.String("message"))
}

func add(_ context.Context, a modules.Args) (any, error) { return a.Float("a") + a.Float("b"), nil }
