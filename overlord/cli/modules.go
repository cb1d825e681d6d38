package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/internal/termtext"
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
	var b strings.Builder
	for i, g := range groups {
		if i > 0 {
			b.WriteByte('\n')
		}
		head := foldNames(g.minions) // web[1-3,7], as -b prints them
		if g.err != nil {
			fmt.Fprintf(&b, "%s: ERROR %s: %s\n", head, g.err.Kind, g.err.Message)
			continue
		}
		fmt.Fprintf(&b, "%s (minion %s):\n", head, g.version)
		for _, m := range g.modules {
			writeModuleText(&b, m, detail, textWidth(a.Stdout))
		}
	}
	// What a minion describes (plugins' docs, errors) must not drive the
	// terminal.
	_, err := io.WriteString(a.Stdout, termtext.Visible(b.String()))
	return err
}

// writeModuleText shows a module for people: a line per method with its
// signature, and with detail every parameter's type, default and doc,
// docs wrapped at width columns.
func writeModuleText(w io.Writer, m modules.ModuleInfo, detail bool, width int) {
	tag := ""
	switch {
	case m.Plugin && m.Version != "":
		tag = " [plugin " + m.Version + "]"
	case m.Plugin:
		tag = " [plugin]"
	}
	if m.Error != "" {
		fmt.Fprintf(w, "  %s%s  BROKEN: %s\n", m.Name, tag, m.Error)
		return
	}
	lead := fmt.Sprintf("  %s%s  ", m.Name, tag)
	fmt.Fprintf(w, "%s%s\n", lead, wrapText(m.Doc, utf8.RuneCountInString(lead), "      ", width))
	for _, meth := range m.Methods {
		sig := fmt.Sprintf("%s.%s(%s)", m.Name, meth.Name, signature(meth.Params))
		if meth.Returns != "" {
			sig += " -> " + meth.Returns
		}
		fmt.Fprintf(w, "    %s\n", wrapText(sig, 4, "          ", width))
		if !detail {
			continue
		}
		if meth.Doc != "" {
			fmt.Fprintf(w, "        %s\n", wrapText(meth.Doc, 8, "        ", width))
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
			lead := fmt.Sprintf("        %-12s %-12s %-16s ", p.Name, p.Type, req)
			fmt.Fprintf(w, "%s%s\n", lead, wrapText(p.Doc, utf8.RuneCountInString(lead), "            ", width))
		}
	}
}

// defaultWidth is the width text is wrapped to when stdout is not a
// terminal.
const defaultWidth = 80

// textWidth returns the width of the terminal w is, or defaultWidth.
func textWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	return defaultWidth
}

// wrapText breaks s at spaces into lines of at most width columns (counted
// in characters): the first line continues one that is already at column
// at, the others start with indent. A word longer than a line stays whole.
// There is no newline at the end.
func wrapText(s string, at int, indent string, width int) string {
	words := strings.Fields(s)
	if len(words) == 0 {
		return ""
	}
	var b strings.Builder
	col, start := at, true
	for _, word := range words {
		n := utf8.RuneCountInString(word)
		if !start && col+1+n > width {
			b.WriteByte('\n')
			b.WriteString(indent)
			col, start = utf8.RuneCountInString(indent), true
		}
		if !start {
			b.WriteByte(' ')
			col++
		}
		b.WriteString(word)
		col += n
		start = false
	}
	return b.String()
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
