// Package service is the service module: systemd units through systemctl
// (status, start, stop, restart, reload, enable, disable, list).
//
// systemctl runs as an argv list, never through a shell, in a process
// group of its own that is killed when the call's context ends. On a host
// without systemd every method fails with a module_error that says so.
package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/command"
	"github.com/overlordhq/overlord/status"
)

// DefaultSystemdDir exists on a host booted with systemd (sd_booted(3)).
const DefaultSystemdDir = "/run/systemd/system"

// Caps on what is kept of systemctl's output.
const (
	maxStdout = 4 << 20
	maxStderr = 64 << 10
)

// maxUnitName is systemd's UNIT_NAME_MAX.
const maxUnitName = 256

// Module is the service module. Its zero value works on the real system;
// tests set the fields.
type Module struct {
	// Systemctl is the systemctl program; "" means "systemctl" on PATH.
	Systemctl string
	// SystemdDir is the directory that shows the host runs systemd; ""
	// means DefaultSystemdDir.
	SystemdDir string
}

var _ modules.Module = Module{}

// Name implements modules.Module.
func (Module) Name() string { return "service" }

// Doc implements modules.Module.
func (Module) Doc() string {
	return "Manage systemd services through systemctl. Without systemd every method is a module_error saying so."
}

var nameParam = modules.Param{Name: "name", Type: modules.String, Required: true,
	Doc: `unit name, such as "nginx" or "nginx.service"; ".service" is added when the name has no unit type suffix`}

// Methods implements modules.Module.
func (m Module) Methods() []*modules.Method {
	meths := []*modules.Method{
		{Name: "status", Doc: "Show a unit's state. A unit that does not exist is not an error: its load_state is not-found.",
			Returns: "{name, description, load_state, active_state, sub_state, enabled (is-enabled's answer: enabled, disabled, static, masked, ...; not-found), main_pid}",
			Params:  []modules.Param{nameParam}, Positional: 1,
			Run: m.status},
	}
	for _, act := range []struct{ name, doc string }{
		{"start", "Start a unit and wait until it has started."},
		{"stop", "Stop a unit and wait until it has stopped."},
		{"restart", "Restart a unit, starting it if it is not running."},
		{"reload", "Ask a unit to reload its configuration."},
		{"enable", "Enable a unit to start at boot."},
		{"disable", "Disable a unit from starting at boot."},
	} {
		meths = append(meths, &modules.Method{
			Name:    act.name,
			Doc:     act.doc + " A failure is a module_error with systemctl's message.",
			Returns: "{name, action, ok}",
			Params:  []modules.Param{nameParam}, Positional: 1,
			Run: m.action(act.name),
		})
	}
	meths = append(meths, &modules.Method{
		Name:    "list",
		Doc:     "List the service units systemd has loaded, active or not, sorted by name.",
		Returns: "{units: [{name, load, active, sub, description}], truncated}",
		Run:     m.list,
	})
	return meths
}

// Status is what status returns.
type Status struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	LoadState   string `json:"load_state"`
	ActiveState string `json:"active_state"`
	SubState    string `json:"sub_state"`
	Enabled     string `json:"enabled"`
	MainPID     int    `json:"main_pid"`
}

func (m Module) status(ctx context.Context, a modules.Args) (any, error) {
	name, err := unitName("status", a.String("name"))
	if err != nil {
		return nil, err
	}
	prog, err := m.systemctl()
	if err != nil {
		return nil, err
	}
	out, err := run(ctx, prog, "show", "--property=Id,Description,LoadState,ActiveState,SubState,MainPID", "--", name)
	if err != nil {
		return nil, err
	}
	props := parseProperties(out.stdout)
	st := Status{
		Name:        name,
		Description: props["Description"],
		LoadState:   props["LoadState"],
		ActiveState: props["ActiveState"],
		SubState:    props["SubState"],
	}
	if id := props["Id"]; id != "" {
		st.Name = id
	}
	st.MainPID, _ = strconv.Atoi(props["MainPID"])

	// is-enabled exits non-zero for anything but enabled; its answer is
	// on stdout either way.
	out, err = run(ctx, prog, "is-enabled", "--", name)
	var se *status.Error
	if errors.As(err, &se) && (se.Kind == status.KindTimeout || se.Kind == status.KindCancelled) {
		return nil, err
	}
	st.Enabled, _, _ = strings.Cut(strings.TrimSpace(out.stdout), "\n")
	if st.Enabled == "" {
		st.Enabled = "unknown"
		if st.LoadState == "not-found" {
			st.Enabled = "not-found"
		}
	}
	return st, nil
}

// Action is what start, stop, restart, reload, enable and disable return.
type Action struct {
	Name   string `json:"name"`
	Action string `json:"action"`
	OK     bool   `json:"ok"`
}

func (m Module) action(verb string) func(context.Context, modules.Args) (any, error) {
	return func(ctx context.Context, a modules.Args) (any, error) {
		name, err := unitName(verb, a.String("name"))
		if err != nil {
			return nil, err
		}
		prog, err := m.systemctl()
		if err != nil {
			return nil, err
		}
		if _, err := run(ctx, prog, verb, "--", name); err != nil {
			return Action{Name: name, Action: verb}, err
		}
		return Action{Name: name, Action: verb, OK: true}, nil
	}
}

// Unit is one unit in list's result.
type Unit struct {
	Name        string `json:"name"`
	Load        string `json:"load"`
	Active      string `json:"active"`
	Sub         string `json:"sub"`
	Description string `json:"description"`
}

// List is what list returns.
type List struct {
	Units     []Unit `json:"units"`
	Truncated bool   `json:"truncated"`
}

func (m Module) list(ctx context.Context, _ modules.Args) (any, error) {
	prog, err := m.systemctl()
	if err != nil {
		return nil, err
	}
	out, err := run(ctx, prog, "list-units", "--type=service", "--all", "--no-legend", "--plain")
	if err != nil {
		return nil, err
	}
	text := out.stdout
	if out.truncated {
		// The last line may be cut short.
		if i := strings.LastIndexByte(text, '\n'); i >= 0 {
			text = text[:i]
		}
	}
	res := List{Units: parseUnits(text), Truncated: out.truncated}
	return res, nil
}

// parseUnits parses list-units --plain --no-legend: "UNIT LOAD ACTIVE SUB
// DESCRIPTION...", one unit a line. Some versions still mark failed or
// missing units with a leading "●" (or "*" outside UTF-8 locales).
func parseUnits(text string) []Unit {
	units := []Unit{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && (f[0] == "●" || f[0] == "*") {
			f = f[1:]
		}
		if len(f) < 4 {
			continue
		}
		u := Unit{Name: f[0], Load: f[1], Active: f[2], Sub: f[3]}
		if len(f) > 4 {
			u.Description = strings.Join(f[4:], " ")
		}
		units = append(units, u)
	}
	sort.Slice(units, func(i, j int) bool { return units[i].Name < units[j].Name })
	return units
}

// parseProperties parses systemctl show's KEY=VALUE lines.
func parseProperties(text string) map[string]string {
	props := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			props[k] = v
		}
	}
	return props
}

// unitTypes are the suffixes of systemd unit names.
var unitTypes = []string{".service", ".socket", ".target", ".timer", ".mount", ".automount",
	".path", ".slice", ".scope", ".device", ".swap"}

// unitName checks a unit name and adds ".service" when it has no unit
// type suffix. It allows what systemd allows in unit names (letters,
// digits, ":-_.\" and "@" for template instances) and nothing that
// systemctl could read as an option or a path.
func unitName(method, name string) (string, error) {
	bad := func(why string) (string, error) {
		return "", status.Errorf(status.KindBadArgs, "%s: parameter name: %s, got %q", method, why, name)
	}
	switch {
	case name == "":
		return bad("must not be empty")
	case strings.HasPrefix(name, "-"):
		return bad("must not start with '-'")
	case strings.Contains(name, "/"):
		return bad("must be a unit name, not a path")
	case strings.HasPrefix(name, ".") || strings.HasPrefix(name, "@"):
		return bad("must start with a letter or digit")
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(":-_.\\@", r)) {
			return bad(fmt.Sprintf("may hold only letters, digits and :-_.\\@, not %q", r))
		}
	}
	hasType := false
	for _, t := range unitTypes {
		if strings.HasSuffix(name, t) && len(name) > len(t) {
			hasType = true
			break
		}
	}
	if !hasType {
		name += ".service"
	}
	if len(name) > maxUnitName {
		return bad(fmt.Sprintf("must be at most %d characters", maxUnitName))
	}
	return name, nil
}

// systemctl returns the systemctl program, or a module_error saying why
// systemd is not available on this host.
func (m Module) systemctl() (string, error) {
	dir := m.SystemdDir
	if dir == "" {
		dir = DefaultSystemdDir
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", status.Errorf(status.KindModuleError, "systemd is not available on this host: %s does not exist, so the host was not booted with systemd", dir)
	}
	prog := m.Systemctl
	if prog == "" {
		prog = "systemctl"
	}
	path, err := exec.LookPath(prog)
	if err != nil {
		return "", status.Errorf(status.KindModuleError, "systemd is not available on this host: %v", err)
	}
	return path, nil
}

// output is what run keeps of systemctl's output.
type output struct {
	stdout    string
	truncated bool
}

// run runs systemctl with args, bounded by ctx. A non-zero exit is a
// module_error with systemctl's stderr; its output is returned too.
func run(ctx context.Context, prog string, args ...string) (output, error) {
	argv := append([]string{prog, "--no-pager", "--no-ask-password"}, args...)
	res, err := command.Exec(ctx, command.Spec{
		Argv: argv, Env: []string{"SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "SYSTEMD_URLIFY=0"}, MaxOutput: maxStdout,
	})
	out := output{stdout: res.Stdout, truncated: res.Truncated}
	what := "systemctl " + strings.Join(withoutDashes(args), " ")
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return out, status.Errorf(status.KindTimeout, "%s killed at the call's deadline", what)
	case ctx.Err() != nil:
		return out, status.Errorf(status.KindCancelled, "%s cancelled", what)
	case err == nil:
		return out, nil
	case res.ExitCode > 0:
		msg := strings.TrimSpace(res.Stderr)
		if len(msg) > maxStderr {
			msg = msg[:maxStderr]
		}
		if msg == "" {
			msg = strings.TrimSpace(out.stdout)
		}
		if msg == "" {
			msg = "no message"
		}
		return out, status.Errorf(status.KindModuleError, "%s failed (exit status %d): %s", what, res.ExitCode, msg)
	}
	msg := err.Error()
	var se *status.Error
	if errors.As(err, &se) {
		msg = strings.TrimPrefix(se.Message, "command ")
	}
	return out, status.Errorf(status.KindModuleError, "%s: %s", what, msg)
}

// withoutDashes drops the "--" that ends systemctl's options, for messages.
func withoutDashes(args []string) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		if a != "--" {
			out = append(out, a)
		}
	}
	return out
}
