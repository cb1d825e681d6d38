// Package plugin loads modules written in any language from a directory:
// an executable NAME in it is module NAME.
//
// The protocol:
//
//	NAME describe              prints the module's description as JSON:
//	                           {"doc": "...", "methods": [{"name": "...",
//	                           "doc": "...", "returns": "...", "params":
//	                           [{"name", "type", "required", "default",
//	                           "doc"}]}]}
//	NAME call METHOD           reads the arguments as a JSON object on
//	                           stdin, prints the result as JSON on stdout
//
// A non-zero exit is a module_error with stderr as its message. Arguments
// are checked against the description before the plugin runs. Calls run
// as command.run's do: with the call's timeout, capped output, and the
// whole process group killed when the call ends early.
//
// A lookup of one plugin looks at its file only, and a listing reads the
// directory again; a description is cached by the plugin file's device,
// inode, size, modification and change times, mode and owner, so plugins
// are picked up, changed and removed without restarting the minion. A
// plugin that fails to describe itself, or that others than root and the
// minion's user could have changed, is listed with its error and breaks
// nothing else.
//
// What is checked is what runs: every time a plugin describes itself or
// is called, its path is resolved and checked (every directory looked in
// on the way, every symlink followed, the file reached), the file reached
// is opened, the open file is checked again, and the process is started
// from that open file (command.Spec.File), not from the path.
package plugin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/command"
	"github.com/overlordhq/overlord/status"
)

// Limits on a plugin's description.
const (
	DescribeTimeout = 5 * time.Second
	MaxDescription  = 1 << 20
	MaxVersion      = 64
	MaxMethods      = 256
	MaxParams       = 64
	// MaxResult caps what a plugin may print as its result.
	MaxResult = 16 << 20
)

// Dir is a directory of plugins, a modules.Source. A plugin named like a
// built-in module is ignored: built-ins are never shadowed.
//
// Only what the minion's own user (or root) controls is run: the
// directory and a plugin (the file a symlink in it leads to) must be
// owned by root or the minion's user and not writable by group or
// others, a plugin must be a regular file, and so must every directory
// looked in on the way to either, from /, but for sticky directories
// (like /tmp) whose entry on the way is root's or the minion's user's.
// What fails these checks is listed as a broken plugin saying why, and
// never run.
type Dir struct {
	Path string
	// UID is the minion's user, which may own plugins beside root; the
	// process's effective uid if nil.
	UID *int

	mu      sync.Mutex
	cache   map[string]cached
	loading map[string]*loading
}

// cached is a plugin's module as loaded from the file that stat showed.
type cached struct {
	key fileKey
	mod modules.Module
}

// loading is a description under way; others asking for the same plugin
// wait for it.
type loading struct {
	key  fileKey
	done chan struct{}
	mod  modules.Module
}

// fileKey says whether a plugin file changed since it was described.
type fileKey struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
	ctime    syscall.Timespec
	mode     fs.FileMode
	uid      uint32
}

func keyOf(fi fs.FileInfo) fileKey {
	k := fileKey{size: fi.Size(), mtime: fi.ModTime(), mode: fi.Mode()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		k.dev, k.ino, k.ctime, k.uid = uint64(st.Dev), uint64(st.Ino), ctimeOf(st), st.Uid
	}
	return k
}

var _ modules.Finder = (*Dir)(nil)

// Modules implements modules.Source: every executable in the directory,
// described (from cache when unchanged).
func (d *Dir) Modules() []modules.Module {
	ents, err := os.ReadDir(d.Path)
	if err != nil {
		return nil // no directory: no plugins
	}
	seen := map[string]bool{}
	var out []modules.Module
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		m, ok := d.find(name)
		if !ok {
			continue
		}
		seen[name] = true
		out = append(out, m)
	}
	d.mu.Lock()
	for name := range d.cache {
		if !seen[name] {
			delete(d.cache, name)
		}
	}
	d.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

// Module implements modules.Finder: the plugin named name, described if
// it is not in the cache, without looking at the others.
func (d *Dir) Module(name string) (modules.Module, bool) {
	if name == "" || strings.HasPrefix(name, ".") || strings.ContainsRune(name, '/') {
		return nil, false
	}
	return d.find(name)
}

// find returns the plugin in file name, if the file is one: an
// executable (through a symlink or not) that is not a directory.
func (d *Dir) find(name string) (modules.Module, bool) {
	path := filepath.Join(d.Path, name)
	fi, err := os.Stat(path) // a first look, to skip what is no plugin
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return nil, false // not executable: not a plugin (a README, a config)
	}
	t, err := d.open(path)
	if err != nil {
		return &broken{name: name, err: err}, true
	}
	defer t.Close()
	return d.get(name, t), true
}

// get returns the module of plugin name, whose file t is: from the cache
// if the file is unchanged, else described now, by running t. The lock
// is not held while a plugin describes itself; a second caller for the
// same plugin waits for the first's description.
func (d *Dir) get(name string, t *target) modules.Module {
	key := t.key
	d.mu.Lock()
	if d.cache == nil {
		d.cache, d.loading = map[string]cached{}, map[string]*loading{}
	}
	if c, ok := d.cache[name]; ok && c.key == key {
		d.mu.Unlock()
		return c.mod
	}
	if l, ok := d.loading[name]; ok && l.key == key {
		d.mu.Unlock()
		<-l.done
		return l.mod
	}
	l := &loading{key: key, done: make(chan struct{})}
	d.loading[name] = l
	d.mu.Unlock()

	l.mod = d.load(name, t)
	close(l.done)
	d.mu.Lock()
	if d.loading[name] == l {
		delete(d.loading, name)
	}
	d.cache[name] = cached{key: key, mod: l.mod}
	d.mu.Unlock()
	return l.mod
}

func (d *Dir) load(name string, t *target) modules.Module {
	path := t.path
	sum := t.sha256()
	if !modules.ValidName(name) {
		return &broken{name: name, sum: sum, err: fmt.Errorf("%q is not a module name (lower-case letters, digits and _, starting with a letter)", name)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), DescribeTimeout)
	defer cancel()
	res, err := command.Exec(ctx, t.spec("describe"))
	if err != nil {
		return &broken{name: name, sum: sum, err: fmt.Errorf("%s describe: %v%s", path, err, stderrNote(res.Stderr))}
	}
	if res.Truncated {
		return &broken{name: name, sum: sum, err: fmt.Errorf("%s describe: description over %d bytes", path, MaxDescription)}
	}
	desc, err := ParseDescription([]byte(res.Stdout))
	if err != nil {
		return &broken{name: name, sum: sum, err: fmt.Errorf("%s describe: %v", path, err)}
	}
	m := newModule(d, name, t, desc)
	m.sum = sum
	return m
}

// sha256 returns the hex SHA-256 of the file t opened, read through its
// descriptor (so it is the file that runs), or "" if it cannot be read
// (a plugin its user may execute but not read). It is computed once per
// change of the file, with its description.
func (t *target) sha256() string {
	r, err := openContent(t.f)
	if err != nil {
		return ""
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

// PathEnv is the environment variable that gives a plugin its path in
// the plugin directory: its $0 is /proc/self/fd/3, the file it was
// started from (command.Spec.File).
const PathEnv = "OVERLORD_PLUGIN"

// spec is how to run t with args.
func (t *target) spec(args ...string) command.Spec {
	return command.Spec{
		Argv:      append([]string{t.path}, args...),
		File:      t.f,
		Env:       []string{PathEnv + "=" + t.path},
		MaxOutput: MaxDescription,
	}
}

func stderrNote(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return ": " + s
}

// Description is what `NAME describe` prints.
type Description struct {
	Doc string `json:"doc"`
	// Version, optional, is the plugin's own version (at most
	// MaxVersion printable characters), shown by 'overlord modules' and
	// recorded by 'overlord inventory'.
	Version string              `json:"version,omitempty"`
	Methods []MethodDescription `json:"methods"`
}

// MethodDescription describes one method of a plugin.
type MethodDescription struct {
	Name    string          `json:"name"`
	Doc     string          `json:"doc"`
	Returns string          `json:"returns"`
	Params  []modules.Param `json:"params"`
	// Positional is how many of Params, from the first, a command line
	// fills with plain words; absent means all of them.
	Positional *int `json:"positional,omitempty"`
}

var types = map[modules.Type]bool{
	modules.String: true, modules.Int: true, modules.Float: true, modules.Bool: true,
	modules.List: true, modules.Object: true, modules.Duration: true, modules.Any: true,
}

// ParseDescription decodes and checks a plugin's description: known
// fields only, valid and distinct method and parameter names, known
// types, defaults of their parameter's type.
func ParseDescription(data []byte) (*Description, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var d Description
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("bad description: %v", err)
	}
	if dec.More() {
		return nil, errors.New("bad description: more than one JSON value")
	}
	if len(d.Methods) == 0 {
		return nil, errors.New("bad description: no methods")
	}
	if err := checkVersion(d.Version); err != nil {
		return nil, err
	}
	if len(d.Methods) > MaxMethods {
		return nil, fmt.Errorf("bad description: %d methods, at most %d", len(d.Methods), MaxMethods)
	}
	methods := map[string]bool{}
	for _, m := range d.Methods {
		if !modules.ValidName(m.Name) {
			return nil, fmt.Errorf("bad description: method name %q", m.Name)
		}
		if methods[m.Name] {
			return nil, fmt.Errorf("bad description: method %s twice", m.Name)
		}
		methods[m.Name] = true
		if len(m.Params) > MaxParams {
			return nil, fmt.Errorf("bad description: %s has %d params, at most %d", m.Name, len(m.Params), MaxParams)
		}
		if m.Positional != nil && (*m.Positional < 0 || *m.Positional > len(m.Params)) {
			return nil, fmt.Errorf("bad description: %s: positional is %d, want 0 to %d (its number of params)", m.Name, *m.Positional, len(m.Params))
		}
		params := map[string]bool{}
		for _, p := range m.Params {
			if !modules.ValidName(p.Name) {
				return nil, fmt.Errorf("bad description: %s: parameter name %q", m.Name, p.Name)
			}
			if params[p.Name] {
				return nil, fmt.Errorf("bad description: %s: parameter %s twice", m.Name, p.Name)
			}
			params[p.Name] = true
			for _, t := range strings.Split(string(p.Type), "|") {
				if !types[modules.Type(t)] {
					return nil, fmt.Errorf("bad description: %s: parameter %s: unknown type %q", m.Name, p.Name, p.Type)
				}
			}
			if p.Default != nil {
				probe := &modules.Method{Name: m.Name, Params: []modules.Param{p}}
				if _, err := probe.Bind(map[string]any{p.Name: p.Default}, nil); err != nil {
					return nil, fmt.Errorf("bad description: %s: parameter %s: default does not fit its type", m.Name, p.Name)
				}
			}
		}
	}
	return &d, nil
}

// checkVersion refuses a version that is too long or holds anything but
// printable ASCII other than spaces.
func checkVersion(v string) error {
	if len(v) > MaxVersion {
		return fmt.Errorf("bad description: version is %d bytes, at most %d", len(v), MaxVersion)
	}
	for _, r := range v {
		if r <= ' ' || r > '~' {
			return fmt.Errorf("bad description: version %q: printable ASCII without spaces only", v)
		}
	}
	return nil
}

// module is a plugin that described itself: the file of key did, and its
// content had SHA-256 sum.
type module struct {
	dir        *Dir
	name, path string
	key        fileKey
	sum        string
	desc       *Description
	methods    []*modules.Method
}

func newModule(dir *Dir, name string, t *target, d *Description) *module {
	m := &module{dir: dir, name: name, path: t.path, key: t.key, desc: d}
	for _, md := range d.Methods {
		method := md.Name
		meth := modules.MethodFromInfo(modules.MethodInfo{Name: md.Name, Doc: md.Doc, Returns: md.Returns, Params: md.Params, Positional: md.Positional})
		meth.Run = func(ctx context.Context, a modules.Args) (any, error) { return m.call(ctx, method, a) }
		m.methods = append(m.methods, meth)
	}
	return m
}

func (m *module) Name() string               { return m.name }
func (m *module) Doc() string                { return m.desc.Doc }
func (m *module) Methods() []*modules.Method { return m.methods }
func (m *module) IsPlugin() bool             { return true }
func (m *module) Version() string            { return m.desc.Version }
func (m *module) SHA256() string             { return m.sum }

func (m *module) call(ctx context.Context, method string, a modules.Args) (any, error) {
	in, err := json.Marshal(map[string]any(a))
	if err != nil {
		return nil, err
	}
	// Checked again here, where it runs, and run from the file checked.
	t, err := m.dir.open(m.path)
	if err != nil {
		return nil, status.Errorf(status.KindModuleError, "plugin %s: %v", m.name, err)
	}
	defer t.Close()
	if t.key != m.key {
		return nil, status.Errorf(status.KindModuleError, "plugin %s changed since it described itself; call it again", m.name)
	}
	spec := t.spec("call", method)
	spec.Stdin, spec.MaxOutput = bytes.NewReader(in), MaxResult
	res, err := command.Exec(ctx, spec)
	if err != nil {
		var se *status.Error
		if errors.As(err, &se) && se.Kind == status.KindModuleError && res.ExitCode > 0 {
			msg := strings.TrimSpace(res.Stderr)
			if msg == "" {
				msg = fmt.Sprintf("plugin %s exited with status %d", m.name, res.ExitCode)
			}
			return nil, status.Errorf(status.KindModuleError, "%s", msg)
		}
		return nil, err
	}
	if res.Truncated {
		return nil, status.Errorf(status.KindModuleError, "plugin %s printed over %d bytes", m.name, MaxResult)
	}
	var out any
	if err := json.Unmarshal([]byte(res.Stdout), &out); err != nil {
		return nil, status.Errorf(status.KindModuleError, "plugin %s printed no JSON result: %v", m.name, err)
	}
	return out, nil
}

// broken is a plugin that could not be loaded; sum is its file's SHA-256
// if it was opened.
type broken struct {
	name string
	sum  string
	err  error
}

func (b *broken) Name() string               { return b.name }
func (b *broken) Doc() string                { return "(broken plugin)" }
func (b *broken) Methods() []*modules.Method { return nil }
func (b *broken) Err() error                 { return b.err }
func (b *broken) IsPlugin() bool             { return true }
func (b *broken) SHA256() string             { return b.sum }
