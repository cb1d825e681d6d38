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
// The directory is read again on every lookup and a description is
// cached by the plugin file's size, modification time and mode, so plugins are
// picked up, changed and removed without restarting the minion. A plugin
// that fails to describe itself is listed with its error and breaks
// nothing else.
package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/command"
	"github.com/overlordhq/overlord/status"
)

// Limits on a plugin's description.
const (
	DescribeTimeout = 5 * time.Second
	MaxDescription  = 1 << 20
	MaxMethods      = 256
	MaxParams       = 64
	// MaxResult caps what a plugin may print as its result.
	MaxResult = 16 << 20
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// Dir is a directory of plugins, a modules.Source. A plugin named like a
// built-in module is ignored: built-ins are never shadowed.
type Dir struct {
	Path string

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	size  int64
	mtime time.Time
	mode  fs.FileMode
	mod   modules.Module
}

var _ modules.Source = (*Dir)(nil)

// Modules implements modules.Source: every executable in the directory,
// described (from cache when unchanged).
func (d *Dir) Modules() []modules.Module {
	ents, err := os.ReadDir(d.Path)
	if err != nil {
		return nil // no directory: no plugins
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cache == nil {
		d.cache = map[string]cached{}
	}
	seen := map[string]bool{}
	var out []modules.Module
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") || e.IsDir() {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Mode()&0o111 == 0 {
			continue // not executable: not a plugin (a README, a config)
		}
		seen[name] = true
		if c, ok := d.cache[name]; ok && c.size == fi.Size() && c.mtime.Equal(fi.ModTime()) && c.mode == fi.Mode() {
			out = append(out, c.mod)
			continue
		}
		m := d.load(name, fi)
		d.cache[name] = cached{size: fi.Size(), mtime: fi.ModTime(), mode: fi.Mode(), mod: m}
		out = append(out, m)
	}
	for name := range d.cache {
		if !seen[name] {
			delete(d.cache, name)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

func (d *Dir) load(name string, fi fs.FileInfo) modules.Module {
	path := filepath.Join(d.Path, name)
	if !nameRE.MatchString(name) {
		return &broken{name: name, err: fmt.Errorf("%q is not a module name (lower-case letters, digits and _, starting with a letter)", name)}
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return &broken{name: name, err: fmt.Errorf("%s is writable by anyone; refusing to run it", path)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), DescribeTimeout)
	defer cancel()
	res, err := command.Exec(ctx, command.Spec{Argv: []string{path, "describe"}, MaxOutput: MaxDescription})
	if err != nil {
		return &broken{name: name, err: fmt.Errorf("%s describe: %v%s", path, err, stderrNote(res.Stderr))}
	}
	if res.Truncated {
		return &broken{name: name, err: fmt.Errorf("%s describe: description over %d bytes", path, MaxDescription)}
	}
	desc, err := ParseDescription([]byte(res.Stdout))
	if err != nil {
		return &broken{name: name, err: fmt.Errorf("%s describe: %v", path, err)}
	}
	return newModule(name, path, desc)
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
	Doc     string              `json:"doc"`
	Methods []MethodDescription `json:"methods"`
}

// MethodDescription describes one method of a plugin.
type MethodDescription struct {
	Name    string          `json:"name"`
	Doc     string          `json:"doc"`
	Returns string          `json:"returns"`
	Params  []modules.Param `json:"params"`
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
	if len(d.Methods) > MaxMethods {
		return nil, fmt.Errorf("bad description: %d methods, at most %d", len(d.Methods), MaxMethods)
	}
	methods := map[string]bool{}
	for _, m := range d.Methods {
		if !nameRE.MatchString(m.Name) {
			return nil, fmt.Errorf("bad description: method name %q", m.Name)
		}
		if methods[m.Name] {
			return nil, fmt.Errorf("bad description: method %s twice", m.Name)
		}
		methods[m.Name] = true
		if len(m.Params) > MaxParams {
			return nil, fmt.Errorf("bad description: %s has %d params, at most %d", m.Name, len(m.Params), MaxParams)
		}
		params := map[string]bool{}
		for _, p := range m.Params {
			if !nameRE.MatchString(p.Name) {
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

// module is a plugin that described itself.
type module struct {
	name, path string
	desc       *Description
	methods    []*modules.Method
}

func newModule(name, path string, d *Description) *module {
	m := &module{name: name, path: path, desc: d}
	for _, md := range d.Methods {
		method := md.Name
		m.methods = append(m.methods, &modules.Method{
			Name: md.Name, Doc: md.Doc, Returns: md.Returns, Params: md.Params,
			Run: func(ctx context.Context, a modules.Args) (any, error) { return m.call(ctx, method, a) },
		})
	}
	return m
}

func (m *module) Name() string               { return m.name }
func (m *module) Doc() string                { return m.desc.Doc }
func (m *module) Methods() []*modules.Method { return m.methods }
func (m *module) IsPlugin() bool             { return true }

func (m *module) call(ctx context.Context, method string, a modules.Args) (any, error) {
	in, err := json.Marshal(map[string]any(a))
	if err != nil {
		return nil, err
	}
	res, err := command.Exec(ctx, command.Spec{Argv: []string{m.path, "call", method}, Stdin: bytes.NewReader(in), MaxOutput: MaxResult})
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

// broken is a plugin that could not be loaded.
type broken struct {
	name string
	err  error
}

func (b *broken) Name() string               { return b.name }
func (b *broken) Doc() string                { return "(broken plugin)" }
func (b *broken) Methods() []*modules.Method { return nil }
func (b *broken) Err() error                 { return b.err }
func (b *broken) IsPlugin() bool             { return true }
