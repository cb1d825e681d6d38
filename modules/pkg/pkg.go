// Package pkg is the package module (module name "package"): the software
// packages installed on a minion, from dpkg (dpkg-query) or rpm, whichever
// the minion has when it is called.
//
// The package manager runs without a shell, with LC_ALL=C, in a process
// group of its own that is killed when the call's deadline passes, and
// its output is capped.
package pkg

import (
	"cmp"
	"context"
	"errors"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/command"
	"github.com/overlordhq/overlord/status"
)

// Defaults for the fields of Module.
const (
	DefaultTimeout   = time.Minute
	DefaultMaxOutput = 16 << 20
)

// maxStderr caps what is kept of the package manager's standard error.
const maxStderr = 64 << 10

// maxName bounds the length of a package name.
const maxName = 256

// validName is what a package name may look like: Debian's and RPM's
// names, with an optional :arch (dpkg) and the characters of versions
// (rpm -q accepts name-version-release). No shell or glob characters, and
// never a leading '-'.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+~^:-]*$`)

// Module is the package module.
type Module struct {
	// LookPath finds a package manager's program (dpkg-query, rpm). Nil
	// means exec.LookPath, which searches the minion's PATH.
	LookPath func(file string) (string, error)
	// Timeout bounds each run of the package manager, within the call's
	// own deadline. Zero means DefaultTimeout.
	Timeout time.Duration
	// MaxOutput caps the package manager's standard output, in bytes.
	// Zero means DefaultMaxOutput.
	MaxOutput int
}

var _ modules.Module = Module{}

// Name implements modules.Module.
func (Module) Name() string { return "package" }

// Doc implements modules.Module.
func (Module) Doc() string {
	return "Installed software packages, from dpkg (dpkg-query) or else rpm, detected at each call. " +
		"A minion with neither fails with a module_error saying so."
}

// Methods implements modules.Module.
func (m Module) Methods() []*modules.Method {
	return []*modules.Method{
		{
			Name: "list",
			Doc: "List the installed packages, sorted by name. With dpkg, installed means the state installed, " +
				"triggers-awaited or triggers-pending; packages removed with their configuration kept are left out.",
			Returns: "list of {name, version, arch}",
			Run:     m.list,
		},
		{
			Name: "query",
			Doc: "Query one package. A package that is not installed is not an error: installed is false. " +
				"For a Multi-Arch package installed for several architectures, name one as NAME:ARCH (dpkg).",
			Returns: `{name, version, arch, installed, status}; status is dpkg's state (installed, config-files, ` +
				`half-configured...), "installed" with rpm, or "not-installed"`,
			Params: []modules.Param{
				{Name: "name", Type: modules.String, Required: true,
					Doc: "the package name, such as openssl or libc6:amd64 (letters, digits and . _ + ~ ^ : -, not starting with -)"},
			},
			Positional: 1,
			Run:        m.query,
		},
	}
}

// Package is one installed package, as list returns it.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
}

// Info is what query returns.
type Info struct {
	Name      string `json:"name"`
	Version   string `json:"version,omitempty"`
	Arch      string `json:"arch,omitempty"`
	Installed bool   `json:"installed"`
	Status    string `json:"status"`
}

// manager is what the module knows of one package manager.
type manager struct {
	program string
	// list and query are the arguments that print every installed
	// package, or the named one, one a line.
	list  []string
	query func(name string) []string
	// parse reads one line of that output.
	parse func(line string) (Info, bool)
	// notFound reports whether a failed query says the package is unknown.
	notFound func(stdout, stderr string) bool
}

// dpkgFormat prints name, version, arch and status ("install ok
// installed"), tab-separated.
const dpkgFormat = "${Package}\t${Version}\t${Architecture}\t${Status}\n"

// rpmFormat prints name, [epoch:]version-release and arch, tab-separated.
const rpmFormat = "%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\n"

// managers are tried in this order: a Debian host with rpm installed for
// building packages still keeps its packages in dpkg.
func managers() []manager {
	return []manager{
		{
			program: "dpkg-query",
			list:    []string{"--show", "--showformat=" + dpkgFormat},
			query:   func(name string) []string { return []string{"--show", "--showformat=" + dpkgFormat, "--", name} },
			parse:   parseDpkg,
			notFound: func(_, stderr string) bool {
				return strings.Contains(stderr, "no packages found matching")
			},
		},
		{
			program: "rpm",
			list:    []string{"--query", "--all", "--queryformat", rpmFormat},
			query:   func(name string) []string { return []string{"--query", "--queryformat", rpmFormat, "--", name} },
			parse:   parseRPM,
			notFound: func(stdout, _ string) bool {
				return strings.Contains(stdout, "is not installed")
			},
		},
	}
}

func parseDpkg(line string) (Info, bool) {
	f := strings.Split(line, "\t")
	if len(f) != 4 || f[0] == "" {
		return Info{}, false
	}
	// Status is "want error state", such as "install ok installed".
	st := strings.Fields(f[3])
	state := "unknown"
	if len(st) > 0 {
		state = st[len(st)-1]
	}
	installed := state == "installed" || state == "triggers-awaited" || state == "triggers-pending"
	return Info{Name: f[0], Version: f[1], Arch: f[2], Installed: installed, Status: state}, true
}

func parseRPM(line string) (Info, bool) {
	f := strings.Split(line, "\t")
	if len(f) != 3 || f[0] == "" {
		return Info{}, false
	}
	arch := f[2]
	if arch == "(none)" { // gpg-pubkey pseudo-packages
		arch = ""
	}
	return Info{Name: f[0], Version: f[1], Arch: arch, Installed: true, Status: "installed"}, true
}

// detect finds the first package manager the minion has.
func (m Module) detect() (manager, string, error) {
	look := m.LookPath
	if look == nil {
		look = exec.LookPath
	}
	var names []string
	for _, mgr := range managers() {
		if path, err := look(mgr.program); err == nil {
			return mgr, path, nil
		}
		names = append(names, mgr.program)
	}
	return manager{}, "", status.Errorf(status.KindModuleError,
		"no package manager: neither %s is in the minion's PATH", strings.Join(names, " nor "))
}

func (m Module) list(ctx context.Context, _ modules.Args) (any, error) {
	mgr, path, err := m.detect()
	if err != nil {
		return nil, err
	}
	out, err := m.run(ctx, mgr.program, path, mgr.list)
	if err != nil {
		return nil, err
	}
	if out.exit != 0 {
		return nil, failed(mgr.program, out)
	}
	pkgs := []Package{}
	for _, line := range out.lines() {
		if p, ok := mgr.parse(line); ok && p.Installed {
			pkgs = append(pkgs, Package{Name: p.Name, Version: p.Version, Arch: p.Arch})
		}
	}
	slices.SortFunc(pkgs, func(a, b Package) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Arch, b.Arch), cmp.Compare(a.Version, b.Version))
	})
	if out.truncated {
		return pkgs, status.Errorf(status.KindModuleError, "%s printed more than %d MiB: listed the first %d packages",
			mgr.program, m.maxOutput()>>20, len(pkgs))
	}
	return pkgs, nil
}

func (m Module) query(ctx context.Context, a modules.Args) (any, error) {
	name := a.String("name")
	switch {
	case name == "":
		return nil, status.Errorf(status.KindBadArgs, "query: parameter name: empty package name")
	case len(name) > maxName:
		return nil, status.Errorf(status.KindBadArgs, "query: parameter name: longer than %d bytes", maxName)
	case strings.HasPrefix(name, "-"):
		return nil, status.Errorf(status.KindBadArgs, "query: parameter name: %q starts with '-'", name)
	case !validName.MatchString(name):
		return nil, status.Errorf(status.KindBadArgs,
			"query: parameter name: %q is not a package name (letters, digits and . _ + ~ ^ : - only)", name)
	}
	mgr, path, err := m.detect()
	if err != nil {
		return nil, err
	}
	absent := Info{Name: name, Installed: false, Status: "not-installed"}
	out, err := m.run(ctx, mgr.program, path, mgr.query(name))
	if err != nil {
		return nil, err
	}
	if out.exit != 0 {
		if out.exit == 1 && mgr.notFound(out.stdout, out.stderr) {
			return absent, nil
		}
		return nil, failed(mgr.program, out)
	}
	var first *Info
	for _, line := range out.lines() {
		p, ok := mgr.parse(line)
		if !ok {
			continue
		}
		if p.Installed {
			return p, nil
		}
		if first == nil {
			first = &p
		}
	}
	if first != nil {
		return *first, nil
	}
	return absent, nil
}

func (m Module) maxOutput() int {
	if m.MaxOutput > 0 {
		return m.MaxOutput
	}
	return DefaultMaxOutput
}

// output is what one run of a package manager printed.
type output struct {
	stdout, stderr string
	truncated      bool
	exit           int
}

// lines returns the whole lines of stdout; after truncation, the last,
// partial line is dropped.
func (o output) lines() []string {
	s := o.stdout
	if o.truncated {
		s = s[:strings.LastIndexByte(s, '\n')+1]
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// failed is the error for a package manager that exited non-zero.
func failed(program string, out output) error {
	msg := strings.TrimSpace(out.stderr)
	if msg == "" {
		msg = strings.TrimSpace(out.stdout)
	}
	if len(msg) > 1000 {
		msg = msg[:1000] + "..."
	}
	return status.Errorf(status.KindModuleError, "%s exited with status %d: %s", program, out.exit, msg)
}

// run runs path with args (no shell) and returns what it printed and its
// exit status. The error is for a program that could not run, was killed,
// or was stopped by the deadline or a cancellation.
func (m Module) run(ctx context.Context, program, path string, args []string) (output, error) {
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	start := time.Now()
	res, err := command.Exec(ctx, command.Spec{Argv: append([]string{path}, args...), Env: []string{"LC_ALL=C"}, MaxOutput: m.maxOutput()})
	stderr := res.Stderr
	if len(stderr) > maxStderr {
		stderr = stderr[:maxStderr]
	}
	out := output{stdout: res.Stdout, stderr: stderr, truncated: res.Truncated}
	switch {
	case err == nil:
		return out, nil
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return out, status.Errorf(status.KindTimeout, "%s killed after %s", program, time.Since(start).Round(time.Millisecond))
	case ctx.Err() != nil:
		return out, status.Errorf(status.KindCancelled, "%s cancelled", program)
	case res.ExitCode > 0:
		out.exit = res.ExitCode // the caller decides what an exit status means
		return out, nil
	}
	msg := err.Error()
	var se *status.Error
	if errors.As(err, &se) {
		msg = strings.TrimPrefix(se.Message, "command ")
	}
	return out, status.Errorf(status.KindModuleError, "%s: %s", program, msg)
}
