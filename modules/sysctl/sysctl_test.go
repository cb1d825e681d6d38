package sysctl_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/sysctl"
	"github.com/overlordhq/overlord/status"
)

// file is one file of a fake tree.
type file struct {
	data string
	mode os.FileMode
}

// fakeRoot writes files (path → content) into a new directory and returns
// it as a file system.
func fakeRoot(t testing.TB, files map[string]file) fs.FS {
	t.Helper()
	root := t.TempDir()
	for name, f := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := f.mode
		if mode == 0 {
			mode = 0o644
		}
		if err := os.WriteFile(path, []byte(f.data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	return os.DirFS(root)
}

// procSys is a small /proc/sys. net.ipv4.conf has both eth0 and the VLAN
// interface eth0.100.
func procSys(t testing.TB) fs.FS {
	return fakeRoot(t, map[string]file{
		"proc/sys/net/ipv4/ip_forward":              {data: "1\n"},
		"proc/sys/net/ipv4/tcp_rmem":                {data: "4096\t131072\t6291456\n"},
		"proc/sys/net/ipv4/conf/eth0/rp_filter":     {data: "1\n"},
		"proc/sys/net/ipv4/conf/eth0.100/rp_filter": {data: "2\n"},
		"proc/sys/kernel/hostname":                  {data: "web1\n"},
		"proc/sys/kernel/empty":                     {data: ""},
		"proc/sys/kernel/huge":                      {data: strings.Repeat("x", sysctl.MaxValue+1)},
		"proc/sys/vm/drop_caches":                   {data: "", mode: 0o200},
		"proc/sys/fs/binfmt_misc/status":            {data: "enabled\n"},
	})
}

func call(t *testing.T, m sysctl.Module, ctx context.Context, method string, positional ...any) (any, error) {
	t.Helper()
	r := modules.NewRegistry()
	if err := r.Add(m); err != nil {
		t.Fatal(err)
	}
	return r.Call(ctx, "sysctl", method, nil, positional)
}

func TestGet(t *testing.T) {
	m := sysctl.Module{FS: procSys(t)}
	tests := []struct {
		name string
		key  any
		want string
		kind status.Kind
		msg  string
	}{
		{name: "value is trimmed", key: "net.ipv4.ip_forward", want: "1"},
		{name: "inner white space kept", key: "net.ipv4.tcp_rmem", want: "4096\t131072\t6291456"},
		{name: "dotted interface name", key: "net.ipv4.conf.eth0.100.rp_filter", want: "2"},
		{name: "plain interface name", key: "net.ipv4.conf.eth0.rp_filter", want: "1"},
		{name: "empty value", key: "kernel.empty", want: ""},
		{name: "unknown key", key: "net.ipv4.no_such_thing", kind: status.KindModuleError, msg: "no sysctl key net.ipv4.no_such_thing"},
		{name: "below a value", key: "net.ipv4.ip_forward.x", kind: status.KindModuleError, msg: "no sysctl key"},
		{name: "write-only", key: "vm.drop_caches", kind: status.KindModuleError, msg: "cannot read vm.drop_caches: write-only"},
		{name: "value over the cap", key: "kernel.huge", kind: status.KindModuleError, msg: "longer than 64 KiB"},
		{name: "a group", key: "net.ipv4", kind: status.KindBadArgs, msg: "net.ipv4 is a group of keys"},
		{name: "slash", key: "net/ipv4/ip_forward", kind: status.KindBadArgs, msg: "contains '/'"},
		{name: "dot dot", key: "net..ipv4", kind: status.KindBadArgs, msg: "contains '..'"},
		{name: "escape", key: "..", kind: status.KindBadArgs, msg: "contains '..'"},
		{name: "leading dot", key: ".net", kind: status.KindBadArgs, msg: "starts or ends with '.'"},
		{name: "trailing dot", key: "net.", kind: status.KindBadArgs, msg: "starts or ends with '.'"},
		{name: "control character", key: "net\n", kind: status.KindBadArgs, msg: "control character"},
		{name: "empty", key: "", kind: status.KindBadArgs, msg: "empty key"},
		{name: "too long", key: strings.Repeat("a.", 300) + "b", kind: status.KindBadArgs, msg: "longer than 512 bytes"},
		{name: "not a string", key: 1.0, kind: status.KindBadArgs, msg: "parameter key: want string"},
		{name: "missing", kind: status.KindBadArgs, msg: "missing required parameter key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var args []any
			if tt.key != nil {
				args = []any{tt.key}
			}
			got, err := call(t, m, context.Background(), "get", args...)
			if tt.kind != "" {
				if status.KindOf(err) != tt.kind || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("error %v, want %s saying %q", err, tt.kind, tt.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %#v, want %q", got, tt.want)
			}
		})
	}
}

func TestList(t *testing.T) {
	m := sysctl.Module{FS: procSys(t)}
	all := map[string]string{
		"kernel.empty":                     "",
		"kernel.hostname":                  "web1",
		"net.ipv4.conf.eth0.100.rp_filter": "2",
		"net.ipv4.conf.eth0.rp_filter":     "1",
		"net.ipv4.ip_forward":              "1",
		"net.ipv4.tcp_rmem":                "4096\t131072\t6291456",
	}
	tests := []struct {
		name string
		args []any
		want sysctl.List
	}{
		{name: "everything but binfmt_misc, skipping the unreadable",
			want: sysctl.List{Values: all, Skipped: 2}},
		{name: "a group", args: []any{"net.ipv4.conf"},
			want: sysctl.List{Values: pick(all, "net.ipv4.conf.eth0.100.rp_filter", "net.ipv4.conf.eth0.rp_filter")}},
		{name: "whole components only", args: []any{"net.ipv4.conf.eth0"},
			want: sysctl.List{Values: pick(all, "net.ipv4.conf.eth0.rp_filter")}},
		{name: "a dotted group", args: []any{"net.ipv4.conf.eth0.100"},
			want: sysctl.List{Values: pick(all, "net.ipv4.conf.eth0.100.rp_filter")}},
		{name: "a single key", args: []any{"net.ipv4.ip_forward"},
			want: sysctl.List{Values: pick(all, "net.ipv4.ip_forward")}},
		{name: "binfmt_misc when asked", args: []any{"fs.binfmt_misc"},
			want: sysctl.List{Values: map[string]string{"fs.binfmt_misc.status": "enabled"}}},
		{name: "limit", args: []any{"", 2.0},
			want: sysctl.List{Values: pick(all, "kernel.empty", "kernel.hostname"), Skipped: 1, Truncated: true}},
		{name: "limit exactly met is not truncated", args: []any{"net", 4.0},
			want: sysctl.List{Values: pick(all, "net.ipv4.conf.eth0.100.rp_filter", "net.ipv4.conf.eth0.rp_filter", "net.ipv4.ip_forward", "net.ipv4.tcp_rmem")}},
		{name: "unreadable single key", args: []any{"vm.drop_caches"},
			want: sysctl.List{Values: map[string]string{}, Skipped: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := call(t, m, context.Background(), "list", tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func pick(m map[string]string, keys ...string) map[string]string {
	out := map[string]string{}
	for _, k := range keys {
		out[k] = m[k]
	}
	return out
}

func TestListErrors(t *testing.T) {
	m := sysctl.Module{FS: procSys(t)}
	tests := []struct {
		name string
		args []any
		kind status.Kind
		msg  string
	}{
		{"unknown prefix", []any{"net.ipv6"}, status.KindModuleError, "no sysctl key net.ipv6"},
		{"bad prefix", []any{"../.."}, status.KindBadArgs, "parameter prefix"},
		{"zero limit", []any{"", 0.0}, status.KindBadArgs, "parameter limit: must be 1 to 100000, got 0"},
		{"huge limit", []any{"", 1e6}, status.KindBadArgs, "parameter limit: must be 1 to 100000"},
		{"fractional limit", []any{"", 1.5}, status.KindBadArgs, "parameter limit: want int"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := call(t, m, context.Background(), "list", tt.args...)
			if status.KindOf(err) != tt.kind || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %v, want %s saying %q", err, tt.kind, tt.msg)
			}
		})
	}
}

func TestListCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := call(t, sysctl.Module{FS: procSys(t)}, ctx, "list")
	if status.KindOf(err) != status.KindCancelled {
		t.Errorf("error %v, want cancelled", err)
	}
}

// The wire shape: values is an object even when empty.
func TestListJSON(t *testing.T) {
	got, err := call(t, sysctl.Module{FS: procSys(t)}, context.Background(), "list", "vm")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(got)
	if want := `{"values":{},"skipped":1,"truncated":false}`; string(data) != want {
		t.Errorf("JSON %s, want %s", data, want)
	}
}

func TestNoProcSys(t *testing.T) {
	m := sysctl.Module{FS: os.DirFS(t.TempDir())}
	for _, method := range []string{"get", "list"} {
		_, err := call(t, m, context.Background(), method, "kernel.hostname")
		if status.KindOf(err) != status.KindModuleError || !strings.Contains(err.Error(), "cannot read /proc/sys") {
			t.Errorf("%s: error %v, want module_error about /proc/sys", method, err)
		}
	}
}

// Smoke test against the machine the tests run on.
func TestRealSystem(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("sysctl reads /proc/sys")
	}
	m := sysctl.Module{}
	got, err := call(t, m, context.Background(), "get", "kernel.ostype")
	if err != nil || got != "Linux" {
		t.Errorf("get kernel.ostype = %#v, %v; want Linux", got, err)
	}
	got, err = call(t, m, context.Background(), "list", "kernel")
	if err != nil {
		t.Fatal(err)
	}
	l := got.(sysctl.List)
	if l.Values["kernel.ostype"] != "Linux" || l.Truncated {
		t.Errorf("list kernel: kernel.ostype = %q, truncated %v", l.Values["kernel.ostype"], l.Truncated)
	}
	got, err = call(t, m, context.Background(), "list")
	if err != nil {
		t.Fatal(err)
	}
	l = got.(sysctl.List)
	keys := slices.Sorted(maps.Keys(l.Values))
	t.Logf("list: %d values, %d skipped", len(keys), l.Skipped)
	if len(keys) < 100 || !slices.Contains(keys, "kernel.ostype") {
		t.Errorf("list: %d values, skipped %d", len(keys), l.Skipped)
	}
	for _, k := range keys {
		if strings.HasPrefix(k, "fs.binfmt_misc.") {
			t.Errorf("list includes %s", k)
			break
		}
	}
	if _, err := os.Stat("/proc/sys/vm/drop_caches"); err == nil {
		_, err := call(t, m, context.Background(), "get", "vm.drop_caches")
		if status.KindOf(err) != status.KindModuleError {
			t.Errorf("get vm.drop_caches (write-only): error %v, want module_error", err)
		}
	}
}
