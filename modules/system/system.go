// Package system is the system module: what a minion is and what it can do
// (list_modules, describe, version).
package system

import (
	"context"
	"os"
	"runtime"

	"github.com/overlordhq/overlord/internal/buildinfo"
	"github.com/overlordhq/overlord/modules"
)

// Module is the system module. It describes the registry it is given.
type Module struct {
	Registry *modules.Registry
	// Info, if set, adds the minion's configuration and health to
	// system.info.
	Info func() map[string]any
}

var _ modules.Module = Module{}

// Name implements modules.Module.
func (Module) Name() string { return "system" }

// Doc implements modules.Module.
func (Module) Doc() string {
	return "Introspection: the minion's modules, their methods and its version."
}

// Methods implements modules.Module.
func (m Module) Methods() []*modules.Method {
	return []*modules.Method{
		{Name: "list_modules", Doc: "List the names of the modules this minion has.", Returns: "list of module names",
			Run: func(context.Context, modules.Args) (any, error) { return m.Registry.Names(), nil }},
		{Name: "describe", Doc: "Describe a module: its methods and their typed parameters.", Returns: "{name, doc, methods}",
			Params: []modules.Param{{Name: "module", Type: modules.String, Required: true, Doc: "module name"}}, Positional: 1,
			Run: func(_ context.Context, a modules.Args) (any, error) {
				info, err := m.Registry.Describe(a.String("module"))
				if err != nil {
					return nil, err
				}
				return info, nil
			}},
		{Name: "info", Doc: "The minion's own configuration and health: its name, state directory, listen address, uptime, async jobs, process and memory.",
			Returns: "{version, pid, goroutines, memory_bytes, ...}", Run: m.info},
		{Name: "version", Doc: "The minion's version, Go version and platform.", Returns: "{version, go, os, arch}",
			Run: func(context.Context, modules.Args) (any, error) {
				return map[string]string{
					"version": buildinfo.Version(),
					"go":      runtime.Version(),
					"os":      runtime.GOOS,
					"arch":    runtime.GOARCH,
				}, nil
			}},
	}
}

func (m Module) info(context.Context, modules.Args) (any, error) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	out := map[string]any{
		"version":          buildinfo.Version(),
		"go":               runtime.Version(),
		"os":               runtime.GOOS,
		"arch":             runtime.GOARCH,
		"pid":              os.Getpid(),
		"goroutines":       runtime.NumGoroutine(),
		"memory_bytes":     ms.Sys,
		"heap_alloc_bytes": ms.HeapAlloc,
		"modules":          len(m.Registry.Names()),
	}
	if m.Info != nil {
		for k, v := range m.Info() {
			out[k] = v
		}
	}
	return out, nil
}
