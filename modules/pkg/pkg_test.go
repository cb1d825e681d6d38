package pkg_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/pkg"
	"github.com/overlordhq/overlord/status"
)

// fakeManagers writes shell scripts standing in for package managers
// (program name → script body) and returns a Module that finds only them.
// Each script records its arguments, NUL-terminated, in <program>.args.
func fakeManagers(t *testing.T, scripts map[string]string) (pkg.Module, string) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range scripts {
		script := "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > \"$0.args\"\n" + body + "\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return pkg.Module{LookPath: func(file string) (string, error) {
		path := filepath.Join(dir, file)
		if _, err := os.Stat(path); err != nil {
			return "", exec.ErrNotFound
		}
		return path, nil
	}}, dir
}

// argsOf returns the arguments the fake program was last run with.
func argsOf(t *testing.T, dir, program string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, program+".args"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
}

func call(t *testing.T, m pkg.Module, ctx context.Context, method string, positional ...any) (any, error) {
	t.Helper()
	r := modules.NewRegistry()
	if err := r.Add(m); err != nil {
		t.Fatal(err)
	}
	return r.Call(ctx, "package", method, nil, positional)
}

// printf returns a shell command printing lines exactly.
func printf(lines ...string) string {
	var quoted []string
	for _, l := range lines {
		quoted = append(quoted, "'"+strings.ReplaceAll(l, "'", `'\''`)+"'")
	}
	return "printf '%s\\n' " + strings.Join(quoted, " ")
}

const (
	dpkgFormat = "--showformat=${Package}\t${Version}\t${Architecture}\t${Status}\n"
	rpmFormat  = "%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\n"
)

func TestList(t *testing.T) {
	tests := []struct {
		name     string
		scripts  map[string]string
		want     []pkg.Package
		program  string
		wantArgs []string
	}{
		{
			name: "dpkg, only installed packages, sorted",
			scripts: map[string]string{"dpkg-query": printf(
				"zlib1g\t1:1.2.13.dfsg-1\tamd64\tinstall ok installed",
				"bash\t5.2.15-2+b2\tamd64\tinstall ok installed",
				"oldpkg\t1.0\tamd64\tdeinstall ok config-files",
				"libc6\t2.36-9\ti386\tinstall ok triggers-pending",
				"libc6\t2.36-9\tamd64\tinstall ok installed",
				"broken\t1\tamd64\tinstall reinstreq half-installed",
				"garbage line",
			)},
			want: []pkg.Package{
				{Name: "bash", Version: "5.2.15-2+b2", Arch: "amd64"},
				{Name: "libc6", Version: "2.36-9", Arch: "amd64"},
				{Name: "libc6", Version: "2.36-9", Arch: "i386"},
				{Name: "zlib1g", Version: "1:1.2.13.dfsg-1", Arch: "amd64"},
			},
			program:  "dpkg-query",
			wantArgs: []string{"--show", dpkgFormat},
		},
		{
			name: "rpm, sorted",
			scripts: map[string]string{"rpm": printf(
				"openssl\t1:3.0.7-25.el9\tx86_64",
				"bash\t5.1.8-6.el9\tx86_64",
				"gpg-pubkey\tfd431d51-4ae0493b\t(none)",
			)},
			want: []pkg.Package{
				{Name: "bash", Version: "5.1.8-6.el9", Arch: "x86_64"},
				{Name: "gpg-pubkey", Version: "fd431d51-4ae0493b", Arch: ""},
				{Name: "openssl", Version: "1:3.0.7-25.el9", Arch: "x86_64"},
			},
			program:  "rpm",
			wantArgs: []string{"--query", "--all", "--queryformat", rpmFormat},
		},
		{
			name: "dpkg wins over rpm",
			scripts: map[string]string{
				"dpkg-query": printf("bash\t5.2\tamd64\tinstall ok installed"),
				"rpm":        "echo rpm must not run >&2; exit 9",
			},
			want:     []pkg.Package{{Name: "bash", Version: "5.2", Arch: "amd64"}},
			program:  "dpkg-query",
			wantArgs: []string{"--show", dpkgFormat},
		},
		{
			name:     "empty database",
			scripts:  map[string]string{"rpm": "true"},
			want:     []pkg.Package{},
			program:  "rpm",
			wantArgs: []string{"--query", "--all", "--queryformat", rpmFormat},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, dir := fakeManagers(t, tt.scripts)
			got, err := call(t, m, context.Background(), "list")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %#v\nwant %#v", got, tt.want)
			}
			if args := argsOf(t, dir, tt.program); !reflect.DeepEqual(args, tt.wantArgs) {
				t.Errorf("%s ran with %q, want %q", tt.program, args, tt.wantArgs)
			}
		})
	}
}

func TestQuery(t *testing.T) {
	tests := []struct {
		name     string
		scripts  map[string]string
		pkg      string
		want     pkg.Info
		wantArgs []string
	}{
		{
			name:     "dpkg installed",
			scripts:  map[string]string{"dpkg-query": printf("bash\t5.2.15-2+b2\tamd64\tinstall ok installed")},
			pkg:      "bash",
			want:     pkg.Info{Name: "bash", Version: "5.2.15-2+b2", Arch: "amd64", Installed: true, Status: "installed"},
			wantArgs: []string{"--show", dpkgFormat, "--", "bash"},
		},
		{
			name:    "dpkg unknown package",
			scripts: map[string]string{"dpkg-query": "echo 'dpkg-query: no packages found matching nosuch' >&2; exit 1"},
			pkg:     "nosuch",
			want:    pkg.Info{Name: "nosuch", Installed: false, Status: "not-installed"},
		},
		{
			name:    "dpkg removed, configuration kept",
			scripts: map[string]string{"dpkg-query": printf("oldpkg\t1.0\tamd64\tdeinstall ok config-files")},
			pkg:     "oldpkg",
			want:    pkg.Info{Name: "oldpkg", Version: "1.0", Arch: "amd64", Installed: false, Status: "config-files"},
		},
		{
			name:    "dpkg known but not installed",
			scripts: map[string]string{"dpkg-query": printf("vim\t\t\tunknown ok not-installed")},
			pkg:     "vim",
			want:    pkg.Info{Name: "vim", Installed: false, Status: "not-installed"},
		},
		{
			name: "dpkg Multi-Arch: the installed one",
			scripts: map[string]string{"dpkg-query": printf(
				"libfoo\t1.0\ti386\tdeinstall ok config-files",
				"libfoo\t1.1\tamd64\tinstall ok installed",
			)},
			pkg:  "libfoo",
			want: pkg.Info{Name: "libfoo", Version: "1.1", Arch: "amd64", Installed: true, Status: "installed"},
		},
		{
			name:     "dpkg arch-qualified name",
			scripts:  map[string]string{"dpkg-query": printf("libc6\t2.36-9\ti386\tinstall ok installed")},
			pkg:      "libc6:i386",
			want:     pkg.Info{Name: "libc6", Version: "2.36-9", Arch: "i386", Installed: true, Status: "installed"},
			wantArgs: []string{"--show", dpkgFormat, "--", "libc6:i386"},
		},
		{
			name:     "rpm installed",
			scripts:  map[string]string{"rpm": printf("openssl\t1:3.0.7-25.el9\tx86_64")},
			pkg:      "openssl",
			want:     pkg.Info{Name: "openssl", Version: "1:3.0.7-25.el9", Arch: "x86_64", Installed: true, Status: "installed"},
			wantArgs: []string{"--query", "--queryformat", rpmFormat, "--", "openssl"},
		},
		{
			name:    "rpm not installed",
			scripts: map[string]string{"rpm": "echo 'package nosuch is not installed'; exit 1"},
			pkg:     "nosuch",
			want:    pkg.Info{Name: "nosuch", Installed: false, Status: "not-installed"},
		},
		{
			name: "rpm several versions: the first",
			scripts: map[string]string{"rpm": printf(
				"kernel\t5.14.0-362.8.1.el9_3\tx86_64",
				"kernel\t5.14.0-362.13.1.el9_3\tx86_64",
			)},
			pkg:  "kernel",
			want: pkg.Info{Name: "kernel", Version: "5.14.0-362.8.1.el9_3", Arch: "x86_64", Installed: true, Status: "installed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, dir := fakeManagers(t, tt.scripts)
			got, err := call(t, m, context.Background(), "query", tt.pkg)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %#v\nwant %#v", got, tt.want)
			}
			if tt.wantArgs != nil {
				var program string
				for p := range tt.scripts {
					program = p
				}
				if args := argsOf(t, dir, program); !reflect.DeepEqual(args, tt.wantArgs) {
					t.Errorf("%s ran with %q, want %q", program, args, tt.wantArgs)
				}
			}
		})
	}
}

// A package that is not installed is {installed: false} on the wire.
func TestQueryNotInstalledJSON(t *testing.T) {
	m, _ := fakeManagers(t, map[string]string{"rpm": "echo 'package nosuch is not installed'; exit 1"})
	got, err := call(t, m, context.Background(), "query", "nosuch")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(got)
	if want := `{"name":"nosuch","installed":false,"status":"not-installed"}`; string(data) != want {
		t.Errorf("JSON %s, want %s", data, want)
	}
}

func TestQueryBadName(t *testing.T) {
	m, dir := fakeManagers(t, map[string]string{"dpkg-query": "echo ran > \"$0.ran\""})
	tests := []struct {
		name string
		arg  any
		msg  string
	}{
		{"option", "-rf", `"-rf" starts with '-'`},
		{"long option", "--admindir=/tmp", "starts with '-'"},
		{"empty", "", "empty package name"},
		{"space", "foo bar", "is not a package name"},
		{"glob", "lib*", "is not a package name"},
		{"shell", "$(reboot)", "is not a package name"},
		{"path", "../x", "is not a package name"},
		{"slash", "a/b", "is not a package name"},
		{"newline", "bash\n", "is not a package name"},
		{"leading dot", ".x", "is not a package name"},
		{"too long", strings.Repeat("a", 257), "longer than 256 bytes"},
		{"not a string", 1.0, "parameter name: want string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := call(t, m, context.Background(), "query", tt.arg)
			if status.KindOf(err) != status.KindBadArgs || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %v, want bad_args saying %q", err, tt.msg)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "dpkg-query.ran")); err == nil {
		t.Error("dpkg-query ran for a bad name")
	}
	t.Run("missing", func(t *testing.T) {
		_, err := call(t, m, context.Background(), "query")
		if status.KindOf(err) != status.KindBadArgs || !strings.Contains(err.Error(), "missing required parameter name") {
			t.Errorf("error %v, want bad_args", err)
		}
	})
}

func TestGoodNames(t *testing.T) {
	m, _ := fakeManagers(t, map[string]string{"dpkg-query": "echo 'dpkg-query: no packages found matching x' >&2; exit 1"})
	for _, name := range []string{"libstdc++6", "python3.11", "libc6:amd64", "g++", "bash-5.1.8-6.el9.x86_64", "Foo_Bar", "0ad", "kernel~rc"} {
		if _, err := call(t, m, context.Background(), "query", name); err != nil {
			t.Errorf("query %q: %v", name, err)
		}
	}
}

func TestFailures(t *testing.T) {
	tests := []struct {
		name    string
		scripts map[string]string
		method  string
		args    []any
		kind    status.Kind
		msg     string
	}{
		{name: "no package manager", method: "list", kind: status.KindModuleError,
			msg: "no package manager: neither dpkg-query nor rpm is in the minion's PATH"},
		{name: "no package manager for query", method: "query", args: []any{"bash"}, kind: status.KindModuleError,
			msg: "no package manager"},
		{name: "list fails", scripts: map[string]string{"dpkg-query": "echo 'dpkg-query: error: parsing file /var/lib/dpkg/status' >&2; exit 2"},
			method: "list", kind: status.KindModuleError, msg: "dpkg-query exited with status 2: dpkg-query: error: parsing file"},
		{name: "query fails", scripts: map[string]string{"rpm": "echo 'error: rpmdb open failed' >&2; exit 1"},
			method: "query", args: []any{"bash"}, kind: status.KindModuleError, msg: "rpm exited with status 1: error: rpmdb open failed"},
		{name: "killed", scripts: map[string]string{"rpm": "kill -9 $$"},
			method: "list", kind: status.KindModuleError, msg: "rpm: signal: killed"},
		{name: "not executable", scripts: map[string]string{"rpm": "true"},
			method: "list", kind: status.KindModuleError, msg: "permission denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, dir := fakeManagers(t, tt.scripts)
			if tt.name == "not executable" {
				if err := os.Chmod(filepath.Join(dir, "rpm"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := call(t, m, context.Background(), tt.method, tt.args...)
			if status.KindOf(err) != tt.kind || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %v, want %s saying %q", err, tt.kind, tt.msg)
			}
		})
	}
}

// A package manager that hangs is killed, with what it started, when the
// timeout or the caller's deadline passes, or the call is cancelled.
func TestStops(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		ctx     func() (context.Context, context.CancelFunc)
		kind    status.Kind
	}{
		// 2 s: long enough for the script to have started its child and
		// written its pid on a loaded machine (300 ms was not, under
		// make test).
		{name: "module timeout", timeout: 2 * time.Second, ctx: func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}, kind: status.KindTimeout},
		{name: "caller deadline", ctx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 2*time.Second)
		}, kind: status.KindTimeout},
		{name: "cancelled", ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(2*time.Second, cancel)
			return ctx, cancel
		}, kind: status.KindCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, dir := fakeManagers(t, map[string]string{"dpkg-query": "sleep 30 & echo $! > \"$0.child\"; sleep 30"})
			m.Timeout = tt.timeout
			ctx, cancel := tt.ctx()
			defer cancel()
			// The kind says the stop, not the manager's own end,
			// ended the call.
			_, err := call(t, m, ctx, "query", "bash")
			if status.KindOf(err) != tt.kind {
				t.Errorf("error %v, want %s", err, tt.kind)
			}
			data, err := os.ReadFile(filepath.Join(dir, "dpkg-query.child"))
			if err != nil {
				t.Fatal(err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
			if err != nil {
				t.Fatal(err)
			}
			waitGone(t, pid)
		})
	}
}

// Output over the cap is listed up to the last whole line, with an error
// saying so.
func TestListOutputCap(t *testing.T) {
	m, _ := fakeManagers(t, map[string]string{
		"dpkg-query": `i=0; while [ $i -lt 100 ]; do printf 'pkg%03d\t1.0\tamd64\tinstall ok installed\n' $i; i=$((i+1)); done`,
	})
	line := len("pkg000\t1.0\tamd64\tinstall ok installed\n")
	m.MaxOutput = 10*line + 5
	got, err := call(t, m, context.Background(), "list")
	if status.KindOf(err) != status.KindModuleError || !strings.Contains(err.Error(), "listed the first 10 packages") {
		t.Errorf("error %v, want module_error saying the output was cut", err)
	}
	if pkgs, _ := got.([]pkg.Package); len(pkgs) != 10 || pkgs[9].Name != "pkg009" {
		t.Errorf("got %v, want pkg000 to pkg009", got)
	}
}

// Smoke test against the machine the tests run on.
func TestRealSystem(t *testing.T) {
	var own string
	for _, p := range []string{"dpkg-query", "rpm"} {
		if _, err := exec.LookPath(p); err == nil {
			own = map[string]string{"dpkg-query": "dpkg", "rpm": "rpm"}[p]
			break
		}
	}
	if own == "" {
		t.Skip("neither dpkg-query nor rpm here")
	}
	m := pkg.Module{}
	got, err := call(t, m, context.Background(), "list")
	if err != nil {
		t.Fatal(err)
	}
	pkgs := got.([]pkg.Package)
	found := false
	for _, p := range pkgs {
		found = found || p.Name == own
		if p.Name == "" || p.Version == "" {
			t.Errorf("incomplete %+v", p)
		}
	}
	if !found {
		t.Errorf("list of %d packages has no %s", len(pkgs), own)
	}
	got, err = call(t, m, context.Background(), "query", own)
	if info, _ := got.(pkg.Info); err != nil || !info.Installed || info.Version == "" || info.Name != own {
		t.Errorf("query %s = %+v, %v", own, got, err)
	}
	got, err = call(t, m, context.Background(), "query", "overlord-no-such-package")
	if info, _ := got.(pkg.Info); err != nil || info.Installed || info.Status != "not-installed" {
		t.Errorf("query of a missing package = %+v, %v", got, err)
	}
}

// waitGone waits until pid has exited (gone or a zombie).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if err != nil {
			t.Skipf("cannot read /proc: %v", err)
		}
		if i := strings.LastIndexByte(string(data), ')'); i > 0 && len(data) > i+2 {
			if st := data[i+2]; st == 'Z' || st == 'X' {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d still runs after the call ended", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
