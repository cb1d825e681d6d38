// Package modules is the minion's module framework: a module is a named set
// of methods, each declaring typed parameters, and a Registry looks methods
// up, checks arguments against their declarations before anything runs, and
// calls them.
//
// The built-in modules live one per subpackage (modules/test,
// modules/command, modules/system); each implements Module and is
// registered by name.
package modules

import (
	"context"
	"fmt"
	"regexp"
	"runtime/debug"
	"sort"
	"strings"
	"sync"

	"github.com/overlordhq/overlord/status"
)

// nameRE is what module and method names look like.
var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// ValidName reports whether s is a well-formed module or method name:
// a lower-case letter, then at most 63 lower-case letters, digits and _.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// CheckCall returns an error of kind bad_args unless module and method
// are well-formed names. Its message quotes at most the start of a name.
func CheckCall(module, method string) error {
	for _, n := range [...]struct{ what, name string }{{"module", module}, {"method", method}} {
		if !ValidName(n.name) {
			shown := n.name
			if len(shown) > 64 {
				shown = shown[:64] + "..."
			}
			return status.Errorf(status.KindBadArgs, "%s name %q is not a name (a lower-case letter, then at most 63 lower-case letters, digits and _)", n.what, shown)
		}
	}
	return nil
}

// Module is a named set of methods.
type Module interface {
	Name() string
	Doc() string
	Methods() []*Method
}

// Method is one callable method of a module.
type Method struct {
	Name    string
	Doc     string
	Params  []Param
	Returns string // what the result is, for people
	// Positional is how many of Params, from the first, a command line
	// fills with plain words (`command.run 'df -h'`); the others take
	// key=value only. 0 means all of them (a plugin whose description
	// does not say), NoPositional none.
	Positional int
	// Run does the work with arguments already checked against Params.
	// It may return a result together with an error (for example the
	// output of a command that exited non-zero); both reach the caller.
	Run func(ctx context.Context, args Args) (any, error)
}

// ModuleInfo describes a module for introspection (system.describe,
// Minion.Describe).
type ModuleInfo struct {
	Name    string       `json:"name"`
	Doc     string       `json:"doc"`
	Methods []MethodInfo `json:"methods"`
	// Plugin is set for a module from the minion's modules.d.
	Plugin bool `json:"plugin,omitempty"`
	// Error says why a module is broken (a plugin that failed to load).
	Error string `json:"error,omitempty"`
	// Version is the version a module declares of itself (a plugin's
	// description may); built-in modules leave it out, theirs is the
	// minion's.
	Version string `json:"version,omitempty"`
	// SHA256 is the hex SHA-256 of the file a module was loaded from (a
	// plugin's), as it was when the module described itself.
	SHA256 string `json:"sha256,omitempty"`
}

// Versioned is implemented by modules that declare a version of their
// own (a plugin whose description gives one).
type Versioned interface {
	Module
	Version() string
}

// FromFile is implemented by modules loaded from a file (plugins):
// SHA256 is the hex SHA-256 of its content, "" if it could not be read.
type FromFile interface {
	Module
	SHA256() string
}

// Plugin is implemented by modules that are plugins.
type Plugin interface {
	Module
	IsPlugin() bool
}

// MethodInfo describes a method.
type MethodInfo struct {
	Name    string  `json:"name"`
	Doc     string  `json:"doc"`
	Params  []Param `json:"params"`
	Returns string  `json:"returns,omitempty"`
	// Positional is how many of Params, from the first, a command line
	// fills with plain words; absent means all of them.
	Positional *int `json:"positional,omitempty"`
}

// Info returns the description of m.
func Info(m Module) ModuleInfo {
	info := ModuleInfo{Name: m.Name(), Doc: m.Doc(), Methods: []MethodInfo{}}
	if p, ok := m.(Plugin); ok {
		info.Plugin = p.IsPlugin()
	}
	if b, ok := m.(Broken); ok {
		info.Error = b.Err().Error()
	}
	if v, ok := m.(Versioned); ok {
		info.Version = v.Version()
	}
	if f, ok := m.(FromFile); ok {
		info.SHA256 = f.SHA256()
	}
	for _, meth := range m.Methods() {
		params := meth.Params
		if params == nil {
			params = []Param{}
		}
		info.Methods = append(info.Methods, MethodInfo{Name: meth.Name, Doc: meth.Doc, Params: params, Returns: meth.Returns, Positional: meth.positionalInfo()})
	}
	return info
}

// Source provides modules that may come and go while the minion runs,
// such as plugins in a directory. Modules is called on every lookup, so it
// must be cheap when nothing changed.
type Source interface {
	Modules() []Module
}

// Finder is implemented by sources that can find one module by name
// without loading the others (a plugin directory describes only the
// plugin asked for).
type Finder interface {
	Source
	Module(name string) (Module, bool)
}

// Broken is implemented by a module that could not be loaded (a plugin
// whose description fails). It is listed with its error; calling it fails.
type Broken interface {
	Module
	Err() error
}

// Registry holds modules by name: the ones added, then those of its
// sources. A lookup by name consults the sources only for a name that
// was not added, so built-in modules never wait on a plugin. It is safe
// for concurrent use.
type Registry struct {
	mu      sync.RWMutex
	mods    map[string]Module
	sources []Source
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{mods: make(map[string]Module)}
}

// Add registers m under its name. A name may be registered once.
func (r *Registry) Add(m Module) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.mods[m.Name()]; dup {
		return fmt.Errorf("module %q registered twice", m.Name())
	}
	r.mods[m.Name()] = m
	return nil
}

// AddSource adds a source of modules. A source's module named like an
// added one is listed as broken and never shadows it.
func (r *Registry) AddSource(s Source) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sources = append(r.sources, s)
}

// all returns every module by name, as of now.
func (r *Registry) all() map[string]Module {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.sources) == 0 {
		return r.mods
	}
	out := make(map[string]Module, len(r.mods))
	for n, m := range r.mods {
		out[n] = m
	}
	for _, src := range r.sources {
		for _, m := range src.Modules() {
			if _, taken := out[m.Name()]; taken {
				if _, builtin := r.mods[m.Name()]; builtin {
					continue // never shadow a built-in (the source reports it itself)
				}
			}
			out[m.Name()] = m
		}
	}
	return out
}

// Names returns the module names, sorted.
func (r *Registry) Names() []string {
	all := r.all()
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (r *Registry) module(name string) (Module, bool) {
	r.mu.RLock()
	m, ok := r.mods[name]
	sources := r.sources
	r.mu.RUnlock()
	if ok {
		return m, true
	}
	for _, src := range sources {
		if f, ok := src.(Finder); ok {
			if m, ok := f.Module(name); ok {
				return m, true
			}
			continue
		}
		for _, m := range src.Modules() {
			if m.Name() == name {
				return m, true
			}
		}
	}
	return nil, false
}

// Describe returns the description of the named module.
func (r *Registry) Describe(module string) (ModuleInfo, error) {
	m, ok := r.module(module)
	if !ok {
		return ModuleInfo{}, status.Errorf(status.KindUnknownModule, "no module %q (have: %s)", module, strings.Join(r.Names(), ", "))
	}
	return Info(m), nil
}

// DescribeAll returns the description of every module, sorted by name.
func (r *Registry) DescribeAll() []ModuleInfo {
	all := r.all()
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]ModuleInfo, 0, len(names))
	for _, n := range names {
		out = append(out, Info(all[n]))
	}
	return out
}

// Lookup returns module.method, or an *status.Error of kind unknown_module
// or unknown_method.
func (r *Registry) Lookup(module, method string) (*Method, error) {
	m, ok := r.module(module)
	if !ok {
		return nil, status.Errorf(status.KindUnknownModule, "no module %q (have: %s)", module, strings.Join(r.Names(), ", "))
	}
	if b, ok := m.(Broken); ok {
		return nil, status.Errorf(status.KindModuleError, "module %q is broken: %v", module, b.Err())
	}
	var names []string
	for _, meth := range m.Methods() {
		if meth.Name == method {
			return meth, nil
		}
		names = append(names, meth.Name)
	}
	return nil, status.Errorf(status.KindUnknownMethod, "module %q has no method %q (have: %s)", module, method, strings.Join(names, ", "))
}

// Call looks up module.method, binds named and positional arguments to its
// parameters and runs it. Errors that are not already an *status.Error
// become kind module_error; a panic in the method becomes kind internal.
func (r *Registry) Call(ctx context.Context, module, method string, named map[string]any, positional []any) (result any, err error) {
	m, err := r.Lookup(module, method)
	if err != nil {
		return nil, err
	}
	args, err := m.Bind(named, positional)
	if err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			result, err = nil, status.Errorf(status.KindInternal, "%s.%s panicked: %v\n%s", module, method, p, debug.Stack())
		}
	}()
	result, err = m.Run(ctx, args)
	if err != nil {
		if _, ok := err.(*status.Error); !ok {
			err = &status.Error{Kind: status.KindModuleError, Message: err.Error()}
		}
	}
	return result, err
}
