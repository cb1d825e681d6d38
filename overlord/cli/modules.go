package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

func (a *App) modulesCmd() *cobra.Command {
	var (
		format  string
		forks   int
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "modules TARGET [MODULE]",
		Short: "Show the modules minions have, their methods and parameters",
		Long: `Ask every minion TARGET matches for its modules (built-in and plugins),
with their methods and typed parameters, and show them. Minions that
describe the same modules are shown together. With MODULE, only that
module, with every parameter's type, default and doc. Records no job.`,
		Example: `  overlord modules '*'
  overlord modules web1 command
  overlord modules @db -o json`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if forks < 1 || timeout <= 0 {
				return usageError("--forks must be at least 1 and --timeout positive")
			}
			descs, err := a.overlord().Describe(cmd.Context(), args[0], forks, timeout)
			if err != nil {
				return err
			}
			var only string
			if len(args) == 2 {
				only = args[1]
			}
			type entry struct {
				OK      bool                 `json:"ok"`
				Version string               `json:"version,omitempty"`
				Modules []modules.ModuleInfo `json:"modules,omitempty"`
				Error   *status.Error        `json:"error,omitempty"`
			}
			out := map[string]entry{}
			failed := false
			for name, d := range descs {
				if d.Err != nil {
					out[name] = entry{Error: d.Err}
					failed = true
					continue
				}
				mods := d.Reply.Modules
				if only != "" {
					mods = nil
					for _, m := range d.Reply.Modules {
						if m.Name == only {
							mods = append(mods, m)
						}
					}
					if len(mods) == 0 {
						out[name] = entry{Error: status.Errorf(status.KindUnknownModule, "no module %q", only)}
						failed = true
						continue
					}
				}
				out[name] = entry{OK: true, Version: d.Reply.Version, Modules: mods}
			}
			switch format {
			case formatJSON:
				err = writeJSON(a.Stdout, out)
			case formatYAML:
				err = writeYAML(a.Stdout, out)
			default:
				err = a.printModules(out2text(out, func(e entry) (string, *status.Error, []modules.ModuleInfo) {
					return e.Version, e.Error, e.Modules
				}), only != "")
			}
			if err != nil {
				return err
			}
			if failed {
				return exitFor(status.ExitFailed)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&forks, "forks", fanout.DefaultForks, "at most this many calls at once")
	cmd.Flags().DurationVar(&timeout, "timeout", overlord.DefaultCallTimeout, "time limit of each minion's answer")
	outputFlag(cmd, &format, formatText, formatJSON, formatYAML)
	return cmd
}

// moduleGroup is a set of minions that gave the same answer.
type moduleGroup struct {
	minions []string
	version string
	err     *status.Error
	modules []modules.ModuleInfo
}

// out2text groups minions whose answers are the same.
func out2text[E any](out map[string]E, parts func(E) (string, *status.Error, []modules.ModuleInfo)) []moduleGroup {
	byKey := map[string]*moduleGroup{}
	var order []string
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		version, err, mods := parts(out[n])
		key, _ := json.Marshal(struct {
			V string
			E *status.Error
			M []modules.ModuleInfo
		}{version, err, mods})
		g, ok := byKey[string(key)]
		if !ok {
			g = &moduleGroup{version: version, err: err, modules: mods}
			byKey[string(key)] = g
			order = append(order, string(key))
		}
		g.minions = append(g.minions, n)
	}
	groups := make([]moduleGroup, len(order))
	for i, k := range order {
		groups[i] = *byKey[k]
	}
	return groups
}

func (a *App) printModules(groups []moduleGroup, detail bool) error {
	for i, g := range groups {
		if i > 0 {
			fmt.Fprintln(a.Stdout)
		}
		head := strings.Join(g.minions, ", ")
		if g.err != nil {
			fmt.Fprintf(a.Stdout, "%s: ERROR %s: %s\n", head, g.err.Kind, g.err.Message)
			continue
		}
		fmt.Fprintf(a.Stdout, "%s (minion %s):\n", head, g.version)
		for _, m := range g.modules {
			writeModuleText(a.Stdout, m, detail)
		}
	}
	return nil
}

// writeModuleText shows a module for people: a line per method with its
// signature, and with detail every parameter's type, default and doc.
func writeModuleText(w io.Writer, m modules.ModuleInfo, detail bool) {
	tag := ""
	if m.Plugin {
		tag = " [plugin]"
	}
	if m.Error != "" {
		fmt.Fprintf(w, "  %s%s  BROKEN: %s\n", m.Name, tag, m.Error)
		return
	}
	fmt.Fprintf(w, "  %s%s  %s\n", m.Name, tag, m.Doc)
	for _, meth := range m.Methods {
		fmt.Fprintf(w, "    %s.%s(%s)", m.Name, meth.Name, signature(meth.Params))
		if meth.Returns != "" {
			fmt.Fprintf(w, " -> %s", meth.Returns)
		}
		fmt.Fprintln(w)
		if !detail {
			continue
		}
		if meth.Doc != "" {
			fmt.Fprintf(w, "        %s\n", meth.Doc)
		}
		for _, p := range meth.Params {
			req := "optional"
			if p.Required {
				req = "required"
			}
			if p.Default != nil {
				d, _ := json.Marshal(p.Default)
				req = "default " + string(d)
			}
			fmt.Fprintf(w, "        %-12s %-12s %-16s %s\n", p.Name, p.Type, req, p.Doc)
		}
	}
}

func signature(params []modules.Param) string {
	parts := make([]string, len(params))
	for i, p := range params {
		opt := ""
		if !p.Required {
			opt = "?"
		}
		parts[i] = fmt.Sprintf("%s%s %s", p.Name, opt, p.Type)
	}
	return strings.Join(parts, ", ")
}
