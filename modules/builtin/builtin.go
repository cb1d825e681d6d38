// Package builtin assembles the registry of built-in modules.
package builtin

import (
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/command"
	"github.com/overlordhq/overlord/modules/facts"
	"github.com/overlordhq/overlord/modules/file"
	"github.com/overlordhq/overlord/modules/mount"
	"github.com/overlordhq/overlord/modules/pkg"
	"github.com/overlordhq/overlord/modules/process"
	"github.com/overlordhq/overlord/modules/service"
	"github.com/overlordhq/overlord/modules/sysctl"
	"github.com/overlordhq/overlord/modules/system"
	"github.com/overlordhq/overlord/modules/test"
)

// Registry returns a new registry holding every built-in module.
func Registry() *modules.Registry { return New(Options{}) }

// Options configure the built-in modules.
type Options struct {
	// Info adds the minion's own configuration and health to system.info.
	Info func() map[string]any
	// MinionPID, in an async job's runner, is the pid of the minion
	// daemon, which the process module then protects too.
	MinionPID int
}

// New returns a new registry holding every built-in module.
func New(opts Options) *modules.Registry {
	r := modules.NewRegistry()
	for _, m := range []modules.Module{
		test.Module{}, command.Module{}, system.Module{Registry: r, Info: opts.Info},
		facts.Module{}, sysctl.Module{}, mount.Module{}, pkg.Module{},
		file.Module{}, process.Module{Minion: opts.MinionPID}, service.Module{},
	} {
		if err := r.Add(m); err != nil {
			panic(err) // built-in names are fixed and distinct
		}
	}
	return r
}
