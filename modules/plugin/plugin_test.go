package plugin_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/builtin"
	"github.com/overlordhq/overlord/modules/plugin"
	"github.com/overlordhq/overlord/status"
)

const hello = `#!/bin/sh
case "$1" in
describe) cat <<'J'
{"doc": "Say hello.", "methods": [
 {"name": "greet", "doc": "Greet someone.", "returns": "a greeting",
  "params": [{"name": "who", "type": "string", "required": true, "doc": "whom"},
             {"name": "times", "type": "int", "default": 1, "doc": "how often"}]},
 {"name": "boom", "doc": "Fail.", "params": []},
 {"name": "hang", "doc": "Hang with a child.", "params": []},
 {"name": "garbage", "doc": "Print no JSON.", "params": []}]}
J
;;
call)
  args=$(cat)
  case "$2" in
  greet) printf '{"greeting": "hello", "args": %s}\n' "$args" ;;
  boom) echo "it broke" >&2; exit 3 ;;
  hang) sleep 60 & echo $! > "$(dirname "$OVERLORD_PLUGIN")/../child.pid"; wait ;;
  garbage) echo "not json" ;;
  esac ;;
esac
`

func writePlugin(t testing.TB, dir, name, body string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}

func registry(t testing.TB) (*modules.Registry, string) {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "modules.d")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	r := builtin.Registry()
	r.AddSource(&plugin.Dir{Path: dir})
	return r, dir
}

func TestPluginCalls(t *testing.T) {
	r, dir := registry(t)
	writePlugin(t, dir, "hello", hello, 0o755)
	ctx := context.Background()

	res, err := r.Call(ctx, "hello", "greet", map[string]any{"who": "world"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := res.(map[string]any)
	if got["greeting"] != "hello" || got["args"].(map[string]any)["times"] != float64(1) {
		t.Errorf("greet = %v, want the greeting and the default times=1 passed on stdin", got)
	}

	tests := []struct {
		method string
		named  map[string]any
		kind   status.Kind
		msg    string
	}{
		{"boom", nil, status.KindModuleError, "it broke"},
		{"garbage", nil, status.KindModuleError, "no JSON result"},
		{"greet", nil, status.KindBadArgs, "missing required parameter who"},
		{"greet", map[string]any{"who": "x", "times": "many"}, status.KindBadArgs, "parameter times"},
		{"nosuch", nil, status.KindUnknownMethod, "nosuch"},
	}
	for _, tt := range tests {
		_, err := r.Call(ctx, "hello", tt.method, tt.named, nil)
		if status.KindOf(err) != tt.kind || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("hello.%s: %v, want %s saying %q", tt.method, err, tt.kind, tt.msg)
		}
	}
}

func TestPluginTimeoutKillsItsChildren(t *testing.T) {
	r, dir := registry(t)
	writePlugin(t, dir, "hello", hello, 0o755)
	pidFile := filepath.Join(dir, "..", "child.pid")
	// The call ends (as a timeout would end it) once the plugin has
	// started its child, however long that takes on a busy machine.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if data, _ := os.ReadFile(pidFile); strings.HasSuffix(string(data), "\n") {
				cancel()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	_, err := r.Call(ctx, "hello", "hang", nil, nil)
	if k := status.KindOf(err); k != status.KindCancelled {
		t.Fatalf("hang: %v, want cancelled once the plugin started its child", err)
	}
	data, _ := os.ReadFile(pidFile)
	pid := strings.TrimSpace(string(data))
	if pid == "" {
		t.Fatal("the plugin wrote no child pid")
	}
	for range 500 {
		if _, err := os.Stat("/proc/" + pid); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("the plugin's child %s outlived the call", pid)
}

func TestBrokenPluginsAreListedAndHarmless(t *testing.T) {
	r, dir := registry(t)
	writePlugin(t, dir, "hello", hello, 0o755)
	writePlugin(t, dir, "notjson", "#!/bin/sh\necho nope\n", 0o755)
	writePlugin(t, dir, "fails", "#!/bin/sh\necho sorry >&2\nexit 1\n", 0o755)
	writePlugin(t, dir, "badtype", `#!/bin/sh
echo '{"doc":"x","methods":[{"name":"m","params":[{"name":"p","type":"colour"}]}]}'
`, 0o755)
	writePlugin(t, dir, "Bad-Name", "#!/bin/sh\n", 0o755)
	writePlugin(t, dir, "README", "not a plugin", 0o644)
	writePlugin(t, dir, "test", "#!/bin/sh\necho '{}'\n", 0o755) // may not shadow test

	infos := map[string]modules.ModuleInfo{}
	for _, m := range r.DescribeAll() {
		infos[m.Name] = m
	}
	for name, want := range map[string]string{"notjson": "bad description", "fails": "sorry", "badtype": "unknown type", "Bad-Name": "not a module name"} {
		if !strings.Contains(infos[name].Error, want) || !infos[name].Plugin {
			t.Errorf("%s: listed as %+v, want a broken plugin saying %q", name, infos[name], want)
		}
		if _, err := r.Call(context.Background(), name, "m", nil, nil); status.KindOf(err) != status.KindModuleError {
			t.Errorf("calling broken %s: %v, want module_error", name, err)
		}
	}
	if _, listed := infos["README"]; listed {
		t.Error("a non-executable file was taken for a plugin")
	}
	if infos["test"].Plugin {
		t.Error("a plugin shadowed the built-in test module")
	}
	if _, err := r.Call(context.Background(), "hello", "greet", map[string]any{"who": "x"}, nil); err != nil {
		t.Errorf("a good plugin beside broken ones: %v", err)
	}
}

func TestPluginsArePickedUpWithoutRestart(t *testing.T) {
	r, dir := registry(t)
	if _, err := r.Lookup("hello", "greet"); status.KindOf(err) != status.KindUnknownModule {
		t.Fatalf("before: %v, want unknown_module", err)
	}
	writePlugin(t, dir, "hello", hello, 0o755)
	if _, err := r.Lookup("hello", "greet"); err != nil {
		t.Fatalf("after adding: %v", err)
	}
	// Changed: a new description is read (size and mtime differ).
	writePlugin(t, dir, "hello", strings.Replace(hello, `"name": "greet"`, `"name": "welcome"`, 1), 0o755)
	if _, err := r.Lookup("hello", "welcome"); err != nil {
		t.Fatalf("after changing: %v", err)
	}
	os.Remove(filepath.Join(dir, "hello"))
	if _, err := r.Lookup("hello", "welcome"); status.KindOf(err) != status.KindUnknownModule {
		t.Fatalf("after removing: %v, want unknown_module", err)
	}
}

func TestParseDescription(t *testing.T) {
	bad := map[string]string{
		"not json":       `nope`,
		"two values":     `{"doc":"","methods":[{"name":"m"}]} {}`,
		"unknown field":  `{"doc":"","methods":[{"name":"m"}],"extra":1}`,
		"no methods":     `{"doc":"","methods":[]}`,
		"bad method":     `{"doc":"","methods":[{"name":"M-1"}]}`,
		"dup method":     `{"doc":"","methods":[{"name":"m"},{"name":"m"}]}`,
		"bad param":      `{"doc":"","methods":[{"name":"m","params":[{"name":"1p","type":"int"}]}]}`,
		"dup param":      `{"doc":"","methods":[{"name":"m","params":[{"name":"p","type":"int"},{"name":"p","type":"int"}]}]}`,
		"unknown type":   `{"doc":"","methods":[{"name":"m","params":[{"name":"p","type":"int|colour"}]}]}`,
		"wrong default":  `{"doc":"","methods":[{"name":"m","params":[{"name":"p","type":"int","default":"x"}]}]}`,
		"param as field": `{"doc":"","methods":[{"name":"m","params":[{"name":"p","type":"int","colour":1}]}]}`,
	}
	for name, in := range bad {
		if _, err := plugin.ParseDescription([]byte(in)); err == nil {
			t.Errorf("%s: accepted %s", name, in)
		}
	}
	d, err := plugin.ParseDescription([]byte(`{"doc":"d","methods":[{"name":"m","params":[{"name":"p","type":"string|list","default":"x"}]}]}`))
	if err != nil || d.Methods[0].Params[0].Type != "string|list" {
		t.Errorf("good description: %+v, %v", d, err)
	}
}

// FuzzParseDescription: whatever a plugin prints, parsing it never panics,
// and a description it accepts binds its own defaults.
func FuzzParseDescription(f *testing.F) {
	for _, seed := range []string{
		`{"doc":"d","methods":[{"name":"m","params":[{"name":"p","type":"string|list","default":"x"}]}]}`,
		`{"doc":"","methods":[{"name":"m","params":[{"name":"n","type":"int","default":3,"required":false}]}]}`,
		`{"methods":[{"name":"a"},{"name":"b","returns":"x"}]}`,
		`nope`, `{}`, `[]`, `{"methods":null}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := plugin.ParseDescription(data)
		if err != nil {
			return
		}
		for _, m := range d.Methods {
			meth := &modules.Method{Name: m.Name, Params: m.Params}
			named := map[string]any{}
			for _, p := range m.Params {
				if p.Default != nil {
					named[p.Name] = p.Default
				} else if p.Required {
					return // nothing to bind it with
				}
			}
			if _, err := meth.Bind(named, nil); err != nil {
				t.Fatalf("accepted description does not bind its own defaults: %v", err)
			}
		}
	})
}
