// Package facts is the facts module: what a minion's host is (name, OS,
// kernel, CPU, memory, addresses), read from /proc, /sys and /etc on Linux.
// The overlord caches these facts and targets minions by them.
//
// Every source the module reads is a field of Module, so tests can give
// it a fake file tree and fake lookups; the zero Module reads the real
// system.
package facts

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/overlordhq/overlord/internal/buildinfo"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/status"
)

// FQDNTimeout bounds the name lookup behind the fqdn fact.
const FQDNTimeout = 2 * time.Second

// maxFile bounds every file the module reads.
const maxFile = 1 << 20

// Module is the facts module.
type Module struct {
	// FS is the file system facts are read from: proc/meminfo,
	// proc/uptime, etc/os-release (else usr/lib/os-release) and
	// sys/devices/system/cpu/online. Nil means the real root,
	// os.DirFS("/").
	FS fs.FS
	// Hostname returns the host's name. Nil means os.Hostname.
	Hostname func() (string, error)
	// LookupCNAME returns the canonical name of a host. Nil means
	// net.DefaultResolver.LookupCNAME (/etc/hosts, then DNS).
	LookupCNAME func(ctx context.Context, host string) (string, error)
	// Uname returns the kernel's release and machine. Nil means the
	// uname system call (Linux only).
	Uname func() (Uname, error)
	// Addrs returns the addresses of the host's network interfaces. Nil
	// means those of every interface that is up and not a loopback, from
	// net.Interfaces.
	Addrs func() ([]net.Addr, error)
}

// Uname is what the facts module uses of uname(2).
type Uname struct {
	Release string // the kernel release, such as 6.1.0-18-amd64
	Machine string // the hardware, such as x86_64 or aarch64
}

var _ modules.Module = Module{}

// fact is one fact: its name, what it is, and how to read it.
type fact struct {
	name, doc string
	read      func(*collector) (any, error)
}

// facts lists every fact in the order they are documented.
func facts() []fact {
	return []fact{
		{"hostname", "string, the host name", (*collector).hostname},
		{"fqdn", fmt.Sprintf("string, the canonical name the resolver (/etc/hosts, then DNS) gives for hostname within %s if it begins with hostname and a dot, else hostname", FQDNTimeout), (*collector).fqdn},
		{"os", `string, ID from /etc/os-release, such as "debian" or "rhel"`, (*collector).osID},
		{"os_version", `string, VERSION_ID from /etc/os-release, such as "12", left out where there is none (rolling releases)`, (*collector).osVersion},
		{"kernel", "string, the kernel release as uname -r gives it", (*collector).kernel},
		{"arch", "string, the host's CPU architecture (uname -m) named as Go's GOARCH names it (amd64, arm64, 386, arm...), or as uname gives it if Go has no name for it", (*collector).arch},
		{"cpus", "number, the online CPUs (/sys/devices/system/cpu/online), else the number the minion may use", (*collector).cpus},
		{"memory_bytes", "number, the total memory in bytes (MemTotal in /proc/meminfo)", (*collector).memory},
		{"uptime_seconds", "number, whole seconds since boot (/proc/uptime)", (*collector).uptime},
		{"ip_addresses", "list of strings, the addresses of the interfaces that are up, without loopback and link-local ones", (*collector).ipAddresses},
		{"minion_version", "string, the minion's version", (*collector).minionVersion},
	}
}

// Names returns the name of every fact, in the order they are documented.
func Names() []string {
	all := facts()
	names := make([]string, len(all))
	for i, f := range all {
		names[i] = f.name
	}
	return names
}

// Name implements modules.Module.
func (Module) Name() string { return "facts" }

// Doc implements modules.Module.
func (Module) Doc() string {
	var b strings.Builder
	b.WriteString("What the minion's host is, read from /proc, /sys and /etc (Linux). Facts:")
	for i, f := range facts() {
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " %s: %s", f.name, f.doc)
	}
	b.WriteString(".")
	return b.String()
}

// Methods implements modules.Module.
func (m Module) Methods() []*modules.Method {
	return []*modules.Method{
		{
			Name:    "all",
			Doc:     "Every fact this host can provide. Facts it cannot provide are left out; facts.get KEY says why.",
			Returns: "{" + strings.Join(Names(), ", ") + "}",
			Run: func(ctx context.Context, _ modules.Args) (any, error) {
				f, _ := m.Collect(ctx)
				return f, nil
			},
		},
		{
			Name:    "get",
			Doc:     "One fact. A fact this host cannot provide is a module_error saying why.",
			Returns: "the fact's value: a string, number or list of strings",
			Params: []modules.Param{
				{Name: "key", Type: modules.String, Required: true, Doc: "the fact: " + strings.Join(Names(), ", ")},
			},
			Positional: 1,
			Run:        m.get,
		},
	}
}

// Collect returns the facts of the real system; see Module.Collect.
func Collect(ctx context.Context) (map[string]any, error) {
	return Module{}.Collect(ctx)
}

// Collect returns every fact m can read, by name. The facts it cannot read
// are left out of the map, and the error, a join of one error per missing
// fact, says why; the map is never nil.
//
// Values are strings, ints (cpus), int64s (memory_bytes, uptime_seconds)
// and a []string (ip_addresses).
func (m Module) Collect(ctx context.Context) (map[string]any, error) {
	c := m.collector(ctx)
	out := make(map[string]any)
	var errs []error
	for _, f := range facts() {
		v, err := f.read(c)
		if err != nil {
			errs = append(errs, unavailable(f.name, err))
			continue
		}
		out[f.name] = v
	}
	return out, errors.Join(errs...)
}

func (m Module) get(ctx context.Context, a modules.Args) (any, error) {
	key := a.String("key")
	for _, f := range facts() {
		if f.name == key {
			v, err := f.read(m.collector(ctx))
			if err != nil {
				return nil, unavailable(key, err)
			}
			return v, nil
		}
	}
	return nil, status.Errorf(status.KindBadArgs, "get: parameter key: no fact %q (have: %s)", key, strings.Join(Names(), ", "))
}

// unavailable is the error for a fact that could not be read.
func unavailable(name string, err error) *status.Error {
	msg := fmt.Sprintf("fact %s is not available: %v", name, err)
	if runtime.GOOS != "linux" {
		msg += fmt.Sprintf(" (the facts module reads Linux's /proc, /sys and /etc; this minion runs on %s)", runtime.GOOS)
	}
	return status.Errorf(status.KindModuleError, "%s", msg)
}

// collector reads facts for one call, reading each shared file once.
type collector struct {
	ctx context.Context
	m   Module
	fs  fs.FS

	osRelease     map[string]string
	osReleaseErr  error
	osReleaseRead bool
}

func (m Module) collector(ctx context.Context) *collector {
	c := &collector{ctx: ctx, m: m, fs: m.FS}
	if c.fs == nil {
		c.fs = os.DirFS("/")
	}
	return c
}

// readFile reads a small file of c.fs. Errors name the file as an
// absolute path.
func (c *collector) readFile(name string) (string, error) {
	f, err := c.fs.Open(name)
	if err != nil {
		return "", pathError(name, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return "", pathError(name, err)
	}
	if len(data) > maxFile {
		return "", fmt.Errorf("/%s: larger than %d KiB", name, maxFile>>10)
	}
	return string(data), nil
}

func pathError(name string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("/%s: %w", name, err)
}

func (c *collector) hostname() (any, error) {
	h := c.m.Hostname
	if h == nil {
		h = os.Hostname
	}
	name, err := h()
	if err != nil {
		return nil, err
	}
	if name == "" {
		return nil, errors.New("the host name is empty")
	}
	return name, nil
}

func (c *collector) fqdn() (any, error) {
	v, err := c.hostname()
	if err != nil {
		return nil, err
	}
	host := v.(string)
	if strings.Contains(host, ".") {
		return host, nil
	}
	lookup := c.m.LookupCNAME
	if lookup == nil {
		lookup = net.DefaultResolver.LookupCNAME
	}
	ctx, cancel := context.WithTimeout(c.ctx, FQDNTimeout)
	defer cancel()
	cname, err := lookup(ctx, host)
	cname = strings.TrimSuffix(cname, ".")
	if err == nil && len(cname) > len(host)+1 && strings.EqualFold(cname[:len(host)+1], host+".") {
		return cname, nil
	}
	return host, nil
}

func (c *collector) readOSRelease() (map[string]string, error) {
	if !c.osReleaseRead {
		c.osReleaseRead = true
		// os-release(5): /etc/os-release, else /usr/lib/os-release.
		data, err := c.readFile("etc/os-release")
		if errors.Is(err, fs.ErrNotExist) {
			data, err = c.readFile("usr/lib/os-release")
			if errors.Is(err, fs.ErrNotExist) {
				err = fmt.Errorf("no /etc/os-release or /usr/lib/os-release: %w", fs.ErrNotExist)
			}
		}
		c.osRelease, c.osReleaseErr = parseOSRelease(data), err
	}
	return c.osRelease, c.osReleaseErr
}

func (c *collector) osID() (any, error) {
	rel, err := c.readOSRelease()
	if err != nil {
		return nil, err
	}
	if id := rel["ID"]; id != "" {
		return id, nil
	}
	return "linux", nil // os-release(5): ID defaults to "linux"
}

func (c *collector) osVersion() (any, error) {
	rel, err := c.readOSRelease()
	if err != nil {
		return nil, err
	}
	if v := rel["VERSION_ID"]; v != "" {
		return v, nil
	}
	return nil, errors.New("os-release has no VERSION_ID")
}

// parseOSRelease parses os-release(5): KEY=value lines, values optionally
// in single or double quotes, with backslash escapes inside double quotes.
func parseOSRelease(data string) map[string]string {
	out := make(map[string]string)
	for line := range strings.Lines(data) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			continue
		}
		switch {
		case len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"':
			v = unescapeShell(v[1 : len(v)-1])
		case len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'':
			v = v[1 : len(v)-1]
		}
		out[k] = v
	}
	return out
}

// unescapeShell removes the backslash before the characters that need one
// inside double quotes: $ " \ and `.
func unescapeShell(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("$\"\\`", s[i+1]) >= 0 {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (c *collector) uname() (Uname, error) {
	u := c.m.Uname
	if u == nil {
		u = uname
	}
	return u()
}

func (c *collector) kernel() (any, error) {
	u, err := c.uname()
	if err != nil {
		return nil, err
	}
	if u.Release == "" {
		return nil, errors.New("uname gives no kernel release")
	}
	return u.Release, nil
}

func (c *collector) arch() (any, error) {
	u, err := c.uname()
	if err != nil {
		return nil, err
	}
	if u.Machine == "" {
		return nil, errors.New("uname gives no machine")
	}
	return goarch(u.Machine), nil
}

// goarch names a uname machine as GOARCH does.
func goarch(machine string) string {
	switch machine {
	case "x86_64", "amd64":
		return "amd64"
	case "i386", "i486", "i586", "i686", "x86":
		return "386"
	case "aarch64", "arm64":
		return "arm64"
	case "aarch64_be":
		return "arm64be"
	case "loongarch64":
		return "loong64"
	}
	if strings.HasPrefix(machine, "armv") || machine == "arm" {
		return "arm" // armv6l, armv7l, armv8l (32-bit)
	}
	return machine // ppc64le, ppc64, s390x, riscv64, mips64...
}

func (c *collector) cpus() (any, error) {
	if data, err := c.readFile("sys/devices/system/cpu/online"); err == nil {
		if n, err := countCPUs(strings.TrimSpace(data)); err == nil && n > 0 {
			return n, nil
		}
	}
	return runtime.NumCPU(), nil
}

// countCPUs counts the CPUs in a kernel CPU list such as "0-3,6,8-9".
func countCPUs(list string) (int, error) {
	n := 0
	for _, r := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, err
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return 0, err
			}
		}
		if a < 0 || b < a {
			return 0, fmt.Errorf("bad CPU range %q", r)
		}
		n += b - a + 1
	}
	return n, nil
}

func (c *collector) memory() (any, error) {
	const name = "proc/meminfo"
	data, err := c.readFile(name)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		// MemTotal:       16314532 kB
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "MemTotal:" {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("/%s: bad MemTotal %q", name, f[1])
		}
		if len(f) > 2 && f[2] == "kB" {
			n *= 1024
		}
		return n, nil
	}
	return nil, fmt.Errorf("/%s has no MemTotal", name)
}

func (c *collector) uptime() (any, error) {
	const name = "proc/uptime"
	data, err := c.readFile(name)
	if err != nil {
		return nil, err
	}
	// 1978.50 2269.94: seconds up, seconds idle (summed over CPUs)
	f := strings.Fields(data)
	if len(f) == 0 {
		return nil, fmt.Errorf("/%s is empty", name)
	}
	secs, err := strconv.ParseFloat(f[0], 64)
	if err != nil || secs < 0 || secs > 1e15 {
		return nil, fmt.Errorf("/%s: bad uptime %q", name, f[0])
	}
	return int64(secs), nil
}

func (c *collector) ipAddresses() (any, error) {
	list := c.m.Addrs
	if list == nil {
		list = interfaceAddrs
	}
	addrs, err := list()
	if err != nil {
		return nil, err
	}
	out := []string{}
	seen := make(map[string]bool)
	for _, a := range addrs {
		var ip net.IP
		switch a := a.(type) {
		case *net.IPNet:
			ip = a.IP
		case *net.IPAddr:
			ip = a.IP
		default:
			continue
		}
		if ip == nil || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() || ip.IsMulticast() {
			continue
		}
		if s := ip.String(); !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out, nil
}

// interfaceAddrs returns the addresses of the interfaces that are up and
// not loopbacks.
func interfaceAddrs() ([]net.Addr, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []net.Addr
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue // the interface went away
		}
		out = append(out, addrs...)
	}
	return out, nil
}

func (c *collector) minionVersion() (any, error) { return buildinfo.Version(), nil }
