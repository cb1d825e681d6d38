package system_test

import (
	"context"
	"runtime"
	"slices"
	"testing"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/builtin"
	"github.com/overlordhq/overlord/status"
)

func TestSystem(t *testing.T) {
	r := builtin.Registry()
	ctx := context.Background()

	got, err := r.Call(ctx, "system", "list_modules", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if names, _ := got.([]string); !slices.Equal(names, []string{"command", "facts", "file", "mount", "package", "process", "service", "sysctl", "system", "test"}) {
		t.Errorf("list_modules = %#v", got)
	}

	got, err = r.Call(ctx, "system", "describe", nil, []any{"command"})
	if err != nil {
		t.Fatal(err)
	}
	info, ok := got.(modules.ModuleInfo)
	if !ok || info.Name != "command" || len(info.Methods) != 2 || info.Methods[0].Name != "run" || info.Methods[1].Name != "script" || *info.Methods[0].Positional != 1 {
		t.Errorf("describe command = %#v", got)
	}

	_, err = r.Call(ctx, "system", "describe", nil, []any{"nosuch"})
	if status.KindOf(err) != status.KindUnknownModule {
		t.Errorf("describe nosuch: %v, want unknown_module", err)
	}

	got, err = r.Call(ctx, "system", "version", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := got.(map[string]string)
	if v["version"] == "" || v["go"] != runtime.Version() || v["os"] != runtime.GOOS || v["arch"] != runtime.GOARCH {
		t.Errorf("version = %#v", got)
	}
}
