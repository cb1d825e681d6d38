package facts_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/internal/buildinfo"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/facts"
	"github.com/overlordhq/overlord/status"
)

// fakeRoot writes files (path → content) into a new directory.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, data := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func debianFiles() map[string]string {
	return map[string]string{
		"etc/os-release": `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"` + "\n" +
			`NAME="Debian GNU/Linux"` + "\n" + `VERSION_ID="12"` + "\n" + "ID=debian\n",
		"proc/meminfo":                  "MemTotal:       16314532 kB\nMemFree:         1000000 kB\n",
		"proc/uptime":                   "12345.67 23456.78\n",
		"sys/devices/system/cpu/online": "0-3,6\n",
	}
}

func cidr(t *testing.T, s string) net.Addr {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return &net.IPNet{IP: ip, Mask: n.Mask}
}

// fake returns a Module over files whose other sources answer as a Debian
// host named web1.example.com would.
func fake(t *testing.T, files map[string]string) facts.Module {
	return facts.Module{
		FS:       os.DirFS(fakeRoot(t, files)),
		Hostname: func() (string, error) { return "web1", nil },
		LookupCNAME: func(context.Context, string) (string, error) {
			return "web1.example.com.", nil
		},
		Uname: func() (facts.Uname, error) { return facts.Uname{Release: "6.1.0-18-amd64", Machine: "x86_64"}, nil },
		Addrs: func() ([]net.Addr, error) {
			return []net.Addr{cidr(t, "10.0.0.5/24"), cidr(t, "2001:db8::5/64")}, nil
		},
	}
}

func call(t *testing.T, m facts.Module, method string, positional ...any) (any, error) {
	t.Helper()
	r := modules.NewRegistry()
	if err := r.Add(m); err != nil {
		t.Fatal(err)
	}
	return r.Call(context.Background(), "facts", method, nil, positional)
}

func TestAll(t *testing.T) {
	got, err := call(t, fake(t, debianFiles()), "all")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"hostname":       "web1",
		"fqdn":           "web1.example.com",
		"os":             "debian",
		"os_version":     "12",
		"kernel":         "6.1.0-18-amd64",
		"arch":           "amd64",
		"cpus":           5,
		"memory_bytes":   int64(16314532 * 1024),
		"uptime_seconds": int64(12345),
		"ip_addresses":   []string{"10.0.0.5", "2001:db8::5"},
		"minion_version": buildinfo.Version(),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}
	if keys := len(facts.Names()); keys != len(want) {
		t.Errorf("Names has %d facts, want %d", keys, len(want))
	}
}

// Facts a host cannot provide are left out of all, which still succeeds;
// Collect says which are missing and why.
func TestAllLeavesOutWhatIsMissing(t *testing.T) {
	m := fake(t, map[string]string{"proc/uptime": "10.0 1.0\n"})
	m.Uname = func() (facts.Uname, error) { return facts.Uname{}, errors.New("no uname here") }
	got, err := call(t, m, "all")
	if err != nil {
		t.Fatalf("all failed: %v", err)
	}
	f := got.(map[string]any)
	for _, k := range []string{"os", "os_version", "kernel", "arch", "memory_bytes"} {
		if _, ok := f[k]; ok {
			t.Errorf("all has %s = %#v", k, f[k])
		}
	}
	for _, k := range []string{"hostname", "fqdn", "cpus", "uptime_seconds", "ip_addresses", "minion_version"} {
		if _, ok := f[k]; !ok {
			t.Errorf("all has no %s", k)
		}
	}

	coll, err := m.Collect(context.Background())
	if !reflect.DeepEqual(coll, f) {
		t.Errorf("Collect = %#v, all = %#v", coll, f)
	}
	for _, msg := range []string{
		"fact os is not available: no /etc/os-release or /usr/lib/os-release",
		"fact kernel is not available: no uname here",
		"fact memory_bytes is not available: /proc/meminfo: no such file or directory",
	} {
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("Collect error %v does not say %q", err, msg)
		}
	}
}

func TestGet(t *testing.T) {
	tests := []struct {
		name string
		key  string
		edit func(files map[string]string, m *facts.Module)
		want any
		kind status.Kind
		msg  string
	}{
		{name: "hostname", key: "hostname", want: "web1"},
		{name: "hostname fails", key: "hostname", edit: func(_ map[string]string, m *facts.Module) {
			m.Hostname = func() (string, error) { return "", errors.New("no name") }
		}, kind: status.KindModuleError, msg: "fact hostname is not available: no name"},

		{name: "fqdn from the resolver", key: "fqdn", want: "web1.example.com"},
		{name: "fqdn: hostname already qualified", key: "fqdn", edit: func(_ map[string]string, m *facts.Module) {
			m.Hostname = func() (string, error) { return "db1.example.org", nil }
			m.LookupCNAME = func(context.Context, string) (string, error) { panic("looked up a qualified name") }
		}, want: "db1.example.org"},
		{name: "fqdn: lookup fails", key: "fqdn", edit: func(_ map[string]string, m *facts.Module) {
			m.LookupCNAME = func(context.Context, string) (string, error) { return "", errors.New("no such host") }
		}, want: "web1"},
		{name: "fqdn: canonical name of another host", key: "fqdn", edit: func(_ map[string]string, m *facts.Module) {
			m.LookupCNAME = func(context.Context, string) (string, error) { return "localhost.localdomain.", nil }
		}, want: "web1"},
		{name: "fqdn: unqualified canonical name", key: "fqdn", edit: func(_ map[string]string, m *facts.Module) {
			m.LookupCNAME = func(context.Context, string) (string, error) { return "web1.", nil }
		}, want: "web1"},
		{name: "fqdn: lookup has a deadline", key: "fqdn", edit: func(_ map[string]string, m *facts.Module) {
			m.LookupCNAME = func(ctx context.Context, host string) (string, error) {
				if d, ok := ctx.Deadline(); !ok || time.Until(d) > facts.FQDNTimeout {
					return "", errors.New("no deadline")
				}
				return host + ".lan", nil
			}
		}, want: "web1.lan"},

		{name: "os", key: "os", want: "debian"},
		{name: "os_version", key: "os_version", want: "12"},
		{name: "os-release quoting", key: "os_version", edit: func(f map[string]string, _ *facts.Module) {
			f["etc/os-release"] = "# comment\n\nID='rocky'\nVERSION_ID=\"9.\\\"3\\\"\"\n"
		}, want: `9."3"`},
		{name: "os-release unquoted", key: "os", edit: func(f map[string]string, _ *facts.Module) {
			f["etc/os-release"] = "ID=alpine\nVERSION_ID=3.19.1\n"
		}, want: "alpine"},
		{name: "os defaults to linux", key: "os", edit: func(f map[string]string, _ *facts.Module) {
			f["etc/os-release"] = "NAME=Something\n"
		}, want: "linux"},
		{name: "os from /usr/lib/os-release", key: "os", edit: func(f map[string]string, _ *facts.Module) {
			delete(f, "etc/os-release")
			f["usr/lib/os-release"] = "ID=arch\n"
		}, want: "arch"},
		{name: "rolling release has no os_version", key: "os_version", edit: func(f map[string]string, _ *facts.Module) {
			f["etc/os-release"] = "ID=arch\nBUILD_ID=rolling\n"
		}, kind: status.KindModuleError, msg: "os-release has no VERSION_ID"},
		{name: "no os-release", key: "os", edit: func(f map[string]string, _ *facts.Module) {
			delete(f, "etc/os-release")
		}, kind: status.KindModuleError, msg: "fact os is not available: no /etc/os-release or /usr/lib/os-release"},

		{name: "kernel", key: "kernel", want: "6.1.0-18-amd64"},
		{name: "no uname", key: "kernel", edit: func(_ map[string]string, m *facts.Module) {
			m.Uname = func() (facts.Uname, error) { return facts.Uname{}, errors.New("not implemented") }
		}, kind: status.KindModuleError, msg: "fact kernel is not available: not implemented"},

		{name: "arch x86_64", key: "arch", want: "amd64"},
		{name: "arch aarch64", key: "arch", edit: machine("aarch64"), want: "arm64"},
		{name: "arch i686", key: "arch", edit: machine("i686"), want: "386"},
		{name: "arch armv7l", key: "arch", edit: machine("armv7l"), want: "arm"},
		{name: "arch ppc64le", key: "arch", edit: machine("ppc64le"), want: "ppc64le"},
		{name: "arch loongarch64", key: "arch", edit: machine("loongarch64"), want: "loong64"},
		{name: "arch unknown machine", key: "arch", edit: machine("sparc64"), want: "sparc64"},

		{name: "cpus", key: "cpus", want: 5},
		{name: "one cpu", key: "cpus", edit: func(f map[string]string, _ *facts.Module) {
			f["sys/devices/system/cpu/online"] = "0\n"
		}, want: 1},
		{name: "cpus without /sys", key: "cpus", edit: func(f map[string]string, _ *facts.Module) {
			delete(f, "sys/devices/system/cpu/online")
		}, want: runtime.NumCPU()},
		{name: "cpus from a garbled list", key: "cpus", edit: func(f map[string]string, _ *facts.Module) {
			f["sys/devices/system/cpu/online"] = "3-1\n"
		}, want: runtime.NumCPU()},

		{name: "memory_bytes", key: "memory_bytes", want: int64(16314532 * 1024)},
		{name: "no MemTotal", key: "memory_bytes", edit: func(f map[string]string, _ *facts.Module) {
			f["proc/meminfo"] = "MemFree: 1 kB\n"
		}, kind: status.KindModuleError, msg: "/proc/meminfo has no MemTotal"},
		{name: "bad MemTotal", key: "memory_bytes", edit: func(f map[string]string, _ *facts.Module) {
			f["proc/meminfo"] = "MemTotal: lots kB\n"
		}, kind: status.KindModuleError, msg: `bad MemTotal "lots"`},

		{name: "uptime_seconds", key: "uptime_seconds", want: int64(12345)},
		{name: "bad uptime", key: "uptime_seconds", edit: func(f map[string]string, _ *facts.Module) {
			f["proc/uptime"] = "\n"
		}, kind: status.KindModuleError, msg: "/proc/uptime is empty"},

		{name: "ip_addresses", key: "ip_addresses", want: []string{"10.0.0.5", "2001:db8::5"}},
		{name: "ip_addresses filtered", key: "ip_addresses", edit: func(_ map[string]string, m *facts.Module) {
			m.Addrs = func() ([]net.Addr, error) {
				return []net.Addr{
					cidr(t, "127.0.0.1/8"), cidr(t, "::1/128"), cidr(t, "fe80::1/64"), cidr(t, "169.254.3.4/16"),
					cidr(t, "192.168.1.9/24"), &net.IPAddr{IP: net.ParseIP("192.168.1.9")},
					&net.IPAddr{IP: net.ParseIP("203.0.113.7")}, &net.UnixAddr{Name: "/x", Net: "unix"},
				}, nil
			}
		}, want: []string{"192.168.1.9", "203.0.113.7"}},
		{name: "no addresses", key: "ip_addresses", edit: func(_ map[string]string, m *facts.Module) {
			m.Addrs = func() ([]net.Addr, error) { return nil, nil }
		}, want: []string{}},
		{name: "interfaces fail", key: "ip_addresses", edit: func(_ map[string]string, m *facts.Module) {
			m.Addrs = func() ([]net.Addr, error) { return nil, errors.New("netlink refused") }
		}, kind: status.KindModuleError, msg: "fact ip_addresses is not available: netlink refused"},

		{name: "minion_version", key: "minion_version", want: buildinfo.Version()},

		{name: "unknown fact", key: "ram", kind: status.KindBadArgs,
			msg: `get: parameter key: no fact "ram" (have: hostname, fqdn, os, os_version, kernel, arch, cpus, memory_bytes, uptime_seconds, ip_addresses, minion_version)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := debianFiles()
			m := fake(t, nil)
			if tt.edit != nil {
				tt.edit(files, &m)
			}
			m.FS = os.DirFS(fakeRoot(t, files))
			got, err := call(t, m, "get", tt.key)
			if tt.kind != "" {
				if status.KindOf(err) != tt.kind || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("error %v, want %s saying %q", err, tt.kind, tt.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func machine(name string) func(map[string]string, *facts.Module) {
	return func(_ map[string]string, m *facts.Module) {
		m.Uname = func() (facts.Uname, error) { return facts.Uname{Release: "6.1", Machine: name}, nil }
	}
}

func TestGetBadArgs(t *testing.T) {
	tests := []struct {
		name string
		args []any
		msg  string
	}{
		{"no key", nil, "missing required parameter key"},
		{"key not a string", []any{1.0}, "parameter key: want string"},
		{"empty key", []any{""}, `no fact ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := call(t, fake(t, nil), "get", tt.args...)
			if status.KindOf(err) != status.KindBadArgs || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %v, want bad_args saying %q", err, tt.msg)
			}
		})
	}
}

// The wire shape of all: numbers are JSON numbers, addresses a list.
func TestAllJSON(t *testing.T) {
	got, err := call(t, fake(t, debianFiles()), "all")
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"cpus":5`, `"memory_bytes":16706080768`, `"ip_addresses":["10.0.0.5","2001:db8::5"]`, `"os":"debian"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("JSON %s has no %s", data, want)
		}
	}
}

// Every fact is named in the docs, which docs/modules.md is made from.
func TestDocs(t *testing.T) {
	info := modules.Info(facts.Module{})
	for _, name := range facts.Names() {
		if !strings.Contains(info.Doc, " "+name+": ") {
			t.Errorf("module doc does not describe %s", name)
		}
	}
	for _, m := range info.Methods {
		if m.Doc == "" || m.Returns == "" {
			t.Errorf("method %s lacks a doc or returns", m.Name)
		}
		for _, p := range m.Params {
			if p.Doc == "" {
				t.Errorf("%s: parameter %s has no doc", m.Name, p.Name)
			}
		}
	}
}

// Smoke test against the machine the tests run on.
func TestRealSystem(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("facts are read from Linux's /proc, /sys and /etc")
	}
	got, err := facts.Collect(context.Background())
	if err != nil {
		t.Logf("Collect: %v", err) // os_version may be missing
	}
	t.Logf("facts: %v", got)
	host, _ := os.Hostname()
	if got["hostname"] != host {
		t.Errorf("hostname %#v, want %q", got["hostname"], host)
	}
	if fqdn, _ := got["fqdn"].(string); !strings.HasPrefix(fqdn, host) {
		t.Errorf("fqdn %q does not begin with the hostname %q", fqdn, host)
	}
	for _, k := range []string{"os", "kernel", "arch", "minion_version"} {
		if s, _ := got[k].(string); s == "" {
			t.Errorf("%s = %#v, want a non-empty string", k, got[k])
		}
	}
	if n, _ := got["cpus"].(int); n < 1 {
		t.Errorf("cpus = %#v", got["cpus"])
	}
	if n, _ := got["memory_bytes"].(int64); n < 1<<24 {
		t.Errorf("memory_bytes = %#v", got["memory_bytes"])
	}
	if _, ok := got["uptime_seconds"].(int64); !ok {
		t.Errorf("uptime_seconds = %#v", got["uptime_seconds"])
	}
	addrs, ok := got["ip_addresses"].([]string)
	if !ok {
		t.Errorf("ip_addresses = %#v", got["ip_addresses"])
	}
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip == nil || ip.IsLoopback() {
			t.Errorf("ip_addresses has %q", a)
		}
	}
	// A minion built for the host reports the host's architecture.
	if runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64" {
		if got["arch"] != runtime.GOARCH {
			t.Errorf("arch %#v on a %s build", got["arch"], runtime.GOARCH)
		}
	}
}
