package service_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/service"
	"github.com/overlordhq/overlord/status"
)

// fakeSystemctl is a shell script standing in for systemctl. It appends
// its arguments, joined by '|', to a log, and answers as a host with
// nginx running, a broken unit and a slow one would.
const fakeSystemctl = `#!/bin/sh
printf '%s|' "$@" >> "$(dirname "$0")/calls"
echo >> "$(dirname "$0")/calls"
case "$*" in
*" show "*" nginx.service")
	printf 'Id=nginx.service\nDescription=A high performance web server\nLoadState=loaded\nActiveState=active\nSubState=running\nMainPID=1234\n' ;;
*" show "*" getty@tty1.service")
	printf 'MainPID=0\nDescription=Getty on tty1\nLoadState=loaded\nActiveState=inactive\nSubState=dead\nId=getty@tty1.service\n' ;;
*" show "*" nosuch.service")
	printf 'Id=nosuch.service\nDescription=nosuch.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nMainPID=0\n' ;;
*" show "*" denied.service")
	echo "Failed to connect to bus: Permission denied" >&2; exit 1 ;;
*" is-enabled "*" nginx.service")
	echo enabled ;;
*" is-enabled "*" getty@tty1.service")
	echo disabled; exit 1 ;;
*" is-enabled "*)
	echo "Failed to get unit file state: No such file or directory" >&2; exit 1 ;;
*" start "*" broken.service")
	echo "Job for broken.service failed because the control process exited with error code." >&2
	echo "See \"systemctl status broken.service\" and \"journalctl -xeu broken.service\" for details." >&2
	exit 1 ;;
*" "*" slow.service")
	exec sleep 30 ;;
*" list-units "*)
	cat <<'EOF'
ssh.service       loaded    active   running SSH server
cron.service      loaded    active   running Regular background program processing daemon
● broken.service  loaded    failed   failed  Broken thing
missing.service   not-found inactive dead    missing.service
EOF
	;;
*" start "*|*" stop "*|*" restart "*|*" reload "*|*" enable "*|*" disable "*)
	;;
*)
	echo "fake systemctl: unexpected call: $*" >&2; exit 99 ;;
esac
`

// fake returns a Module using the fake systemctl, and a function that
// returns the calls it has had.
func fake(t *testing.T) (service.Module, func() []string) {
	t.Helper()
	dir := t.TempDir()
	prog := filepath.Join(dir, "systemctl")
	if err := os.WriteFile(prog, []byte(fakeSystemctl), 0o755); err != nil {
		t.Fatal(err)
	}
	calls := func() []string {
		data, err := os.ReadFile(filepath.Join(dir, "calls"))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return strings.Fields(string(data))
	}
	return service.Module{Systemctl: prog, SystemdDir: dir}, calls
}

func call(t *testing.T, ctx context.Context, m service.Module, method string, positional ...any) (any, *status.Error) {
	t.Helper()
	r := modules.NewRegistry()
	if err := r.Add(m); err != nil {
		t.Fatal(err)
	}
	got, err := r.Call(ctx, "service", method, nil, positional)
	if err == nil {
		return got, nil
	}
	var se *status.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a *status.Error", err, err)
	}
	return got, se
}

func TestStatus(t *testing.T) {
	tests := []struct {
		name  string
		arg   string
		want  service.Status
		calls []string
	}{
		{name: "running and enabled", arg: "nginx",
			want: service.Status{Name: "nginx.service", Description: "A high performance web server", LoadState: "loaded",
				ActiveState: "active", SubState: "running", Enabled: "enabled", MainPID: 1234},
			calls: []string{
				"--no-pager|--no-ask-password|show|--property=Id,Description,LoadState,ActiveState,SubState,MainPID|--|nginx.service|",
				"--no-pager|--no-ask-password|is-enabled|--|nginx.service|",
			}},
		{name: "template instance, disabled", arg: "getty@tty1.service",
			want: service.Status{Name: "getty@tty1.service", Description: "Getty on tty1", LoadState: "loaded",
				ActiveState: "inactive", SubState: "dead", Enabled: "disabled"}},
		{name: "no such unit", arg: "nosuch",
			want: service.Status{Name: "nosuch.service", Description: "nosuch.service", LoadState: "not-found",
				ActiveState: "inactive", SubState: "dead", Enabled: "not-found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, calls := fake(t)
			got, err := call(t, context.Background(), m, "status", tt.arg)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("status:\n got %+v\nwant %+v", got, tt.want)
			}
			if tt.calls != nil && !slices.Equal(calls(), tt.calls) {
				t.Errorf("systemctl calls:\n%s\nwant:\n%s", strings.Join(calls(), "\n"), strings.Join(tt.calls, "\n"))
			}
		})
	}
	t.Run("show fails", func(t *testing.T) {
		m, _ := fake(t)
		_, err := call(t, context.Background(), m, "status", "denied")
		if err == nil || err.Kind != status.KindModuleError || !strings.Contains(err.Message, "Failed to connect to bus: Permission denied") {
			t.Errorf("error %v, want module_error with systemctl's message", err)
		}
	})
}

func TestActions(t *testing.T) {
	for _, verb := range []string{"start", "stop", "restart", "reload", "enable", "disable"} {
		t.Run(verb, func(t *testing.T) {
			m, calls := fake(t)
			got, err := call(t, context.Background(), m, verb, "nginx")
			if err != nil {
				t.Fatal(err)
			}
			if want := (service.Action{Name: "nginx.service", Action: verb, OK: true}); got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
			if want := []string{"--no-pager|--no-ask-password|" + verb + "|--|nginx.service|"}; !slices.Equal(calls(), want) {
				t.Errorf("systemctl calls %q, want %q", calls(), want)
			}
		})
	}
	t.Run("failure carries systemctl's message", func(t *testing.T) {
		m, _ := fake(t)
		got, err := call(t, context.Background(), m, "start", "broken")
		if err == nil || err.Kind != status.KindModuleError {
			t.Fatalf("error %v, want module_error", err)
		}
		for _, want := range []string{"systemctl start broken.service failed (exit status 1)", "Job for broken.service failed", "journalctl -xeu broken.service"} {
			if !strings.Contains(err.Message, want) {
				t.Errorf("message %q does not say %q", err.Message, want)
			}
		}
		if want := (service.Action{Name: "broken.service", Action: "start"}); got != want {
			t.Errorf("result %+v, want %+v", got, want)
		}
	})
	t.Run("the call's deadline kills systemctl", func(t *testing.T) {
		m, _ := fake(t)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := call(t, ctx, m, "restart", "slow")
		if err == nil || err.Kind != status.KindTimeout || !strings.Contains(err.Message, "systemctl restart slow.service") {
			t.Errorf("error %v, want timeout naming the command", err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("took %s with a 300ms deadline", took)
		}
	})
}

func TestList(t *testing.T) {
	m, calls := fake(t)
	got, err := call(t, context.Background(), m, "list")
	if err != nil {
		t.Fatal(err)
	}
	want := []service.Unit{
		{Name: "broken.service", Load: "loaded", Active: "failed", Sub: "failed", Description: "Broken thing"},
		{Name: "cron.service", Load: "loaded", Active: "active", Sub: "running", Description: "Regular background program processing daemon"},
		{Name: "missing.service", Load: "not-found", Active: "inactive", Sub: "dead", Description: "missing.service"},
		{Name: "ssh.service", Load: "loaded", Active: "active", Sub: "running", Description: "SSH server"},
	}
	l, ok := got.(service.List)
	if !ok || l.Truncated || !slices.Equal(l.Units, want) {
		t.Errorf("list:\n got %+v\nwant %+v", got, want)
	}
	if want := []string{"--no-pager|--no-ask-password|list-units|--type=service|--all|--no-legend|--plain|"}; !slices.Equal(calls(), want) {
		t.Errorf("systemctl calls %q, want %q", calls(), want)
	}
}

func TestUnitNames(t *testing.T) {
	good := map[string]string{
		"nginx":               "nginx.service",
		"nginx.service":       "nginx.service",
		"ssh.socket":          "ssh.socket",
		"apt-daily.timer":     "apt-daily.timer",
		"getty@tty1":          "getty@tty1.service",
		"foo.bar":             "foo.bar.service",
		"dev-sda1.device":     "dev-sda1.device",
		`run-user-1000.mount`: "run-user-1000.mount",
		`a\x2db`:              `a\x2db.service`,
	}
	for in, want := range good {
		t.Run(in, func(t *testing.T) {
			m, _ := fake(t)
			got, err := call(t, context.Background(), m, "stop", in)
			if err != nil {
				t.Fatal(err)
			}
			if a := got.(service.Action); a.Name != want {
				t.Errorf("name %q, want %q", a.Name, want)
			}
		})
	}
	bad := []struct{ name, msg string }{
		{"", "must not be empty"},
		{"-H", "must not start with '-'"},
		{"--root=/", "must not start with '-'"},
		{"/etc/systemd/system/x.service", "not a path"},
		{"../x", "not a path"},
		{"foo bar", "may hold only"},
		{"x;reboot", "may hold only"},
		{"x$(id)", "may hold only"},
		{"nginx*", "may hold only"},
		{"é", "may hold only"},
		{".service", "must start with a letter or digit"},
		{strings.Repeat("a", 250), "at most 256 characters"},
	}
	for _, tt := range bad {
		t.Run("bad "+tt.name, func(t *testing.T) {
			m, calls := fake(t)
			for _, method := range []string{"status", "start", "disable"} {
				_, err := call(t, context.Background(), m, method, tt.name)
				if err == nil || err.Kind != status.KindBadArgs || !strings.Contains(err.Message, tt.msg) {
					t.Errorf("%s %q: error %v, want bad_args saying %q", method, tt.name, err, tt.msg)
				}
			}
			if c := calls(); len(c) > 0 {
				t.Errorf("systemctl ran: %q", c)
			}
		})
	}
	t.Run("name of a wrong type", func(t *testing.T) {
		m, _ := fake(t)
		_, err := call(t, context.Background(), m, "start", 3.0)
		if err == nil || err.Kind != status.KindBadArgs || !strings.Contains(err.Message, "parameter name: want string") {
			t.Errorf("error %v, want bad_args", err)
		}
	})
}

// Without systemd every method fails with a module_error that says so.
func TestNoSystemd(t *testing.T) {
	withFake, calls := fake(t)
	tests := []struct {
		name string
		m    service.Module
		msg  string
	}{
		{"not booted with systemd", service.Module{Systemctl: withFake.Systemctl, SystemdDir: filepath.Join(t.TempDir(), "nope")}, "host was not booted with systemd"},
		{"no systemctl", service.Module{Systemctl: filepath.Join(t.TempDir(), "systemctl"), SystemdDir: withFake.SystemdDir}, "systemctl"},
		{"no systemctl on PATH", service.Module{Systemctl: "systemctl-that-does-not-exist", SystemdDir: withFake.SystemdDir}, "executable file not found"},
	}
	if _, err := os.Stat(service.DefaultSystemdDir); os.IsNotExist(err) {
		// This host, as it is.
		tests = append(tests, struct {
			name string
			m    service.Module
			msg  string
		}{"this host", service.Module{}, "host was not booted with systemd"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, meth := range tt.m.Methods() {
				var args []any
				if len(meth.Params) > 0 {
					args = []any{"nginx"}
				}
				_, err := call(t, context.Background(), tt.m, meth.Name, args...)
				if err == nil || err.Kind != status.KindModuleError ||
					!strings.Contains(err.Message, "systemd is not available on this host") || !strings.Contains(err.Message, tt.msg) {
					t.Errorf("%s: error %v, want module_error saying systemd is not available (%s)", meth.Name, err, tt.msg)
				}
			}
		})
	}
	if c := calls(); len(c) > 0 {
		t.Errorf("systemctl ran: %q", c)
	}
}

func TestDocs(t *testing.T) {
	m := service.Module{}
	if m.Name() != "service" || m.Doc() == "" {
		t.Errorf("name %q doc %q", m.Name(), m.Doc())
	}
	var names []string
	for _, meth := range m.Methods() {
		names = append(names, meth.Name)
		if meth.Doc == "" || meth.Returns == "" || meth.Run == nil {
			t.Errorf("%s: doc %q returns %q", meth.Name, meth.Doc, meth.Returns)
		}
		for _, p := range meth.Params {
			if p.Doc == "" {
				t.Errorf("%s: parameter %s has no doc", meth.Name, p.Name)
			}
		}
	}
	if want := []string{"status", "start", "stop", "restart", "reload", "enable", "disable", "list"}; !slices.Equal(names, want) {
		t.Errorf("methods %v, want %v", names, want)
	}
}
