package cli

import (
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/internal/termtext"
	"github.com/overlordhq/overlord/overlord"
)

func (a *App) inventoryShowCmd() *cobra.Command {
	var format, at string
	cmd := &cobra.Command{
		Use:   "show [NAME] [--at VERSION|TIME]",
		Short: "Print a version of the inventory: every minion, or one in full",
		Long: `Print a version of the inventory, the newest unless --at names another:
by number (--at 4), as the newest taken at or before a time (--at
2026-11-21T13:00:00Z, --at '2026-11-21 13:00', --at 2026-11-21, in local
time unless the zone is given), or a duration ago (--at 24h).

Without NAME, text output is a table of the minions; with NAME (a minion's
name, or a pattern with * ? [...]), every fact and module of the minions it
names. JSON and YAML print the version's document, with only the minions
NAME names when it is given. A minion that did not answer is shown with
why, and the version its data is from.`,
		Example: `  overlord inventory show
  overlord inventory show web1
  overlord inventory show 'web*' --at 24h -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := a.overlord()
			v, err := resolveVersion(o, at)
			if err != nil {
				return err
			}
			inv, err := o.InventoryAt(v)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				if _, err := path.Match(args[0], ""); err != nil {
					return usageError("bad NAME pattern %q: %v", args[0], err)
				}
				for n := range inv.Minions {
					if ok, _ := path.Match(args[0], n); !ok {
						delete(inv.Minions, n)
					}
				}
				if len(inv.Minions) == 0 {
					return fmt.Errorf("%w: no minion %s in inventory %s", overlord.ErrNoMatch, args[0], versionLine(inv.Version, inv.At))
				}
			}
			switch format {
			case formatJSON:
				return writeJSON(a.Stdout, inv)
			case formatYAML:
				return writeYAML(a.Stdout, inv)
			}
			fmt.Fprintf(a.Stdout, "inventory %s, target %s: %s\n", versionLine(inv.Version, inv.At), termtext.Line(inv.Target), fmt.Sprintf("%d minion%s", len(inv.Minions), plural(len(inv.Minions))))
			if len(args) == 0 {
				return showTable(a.Stdout, inv)
			}
			for _, n := range sortedNames(inv.Minions) {
				fmt.Fprintln(a.Stdout)
				if err := showMinion(a.Stdout, n, inv.Minions[n]); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "the version to show: a `VERSION` number, a TIME, or a duration ago (24h); default the newest")
	outputFlag(cmd, &format, formatText, formatJSON, formatYAML)
	return cmd
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// showTable prints a line per minion: its state, version, a few facts,
// how many modules and plugins it has, and where its data is from.
func showTable(w io.Writer, inv overlord.Inventory) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tMINION\tOS\tKERNEL\tMODULES\tPLUGINS\tDATA")
	for _, n := range sortedNames(inv.Minions) {
		m := inv.Minions[n]
		plugins := 0
		for _, mod := range m.Modules {
			if mod.Plugin {
				plugins++
			}
		}
		data := "this version"
		switch {
		case m.AsOf != 0:
			data = fmt.Sprintf("version %d", m.AsOf)
		case !hasData(m):
			data = "none"
		}
		state := m.State
		if state == overlord.InventoryKept && m.Error != nil {
			state += " (unreachable)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", n, state, orDashText(m.MinionVersion),
			orDashText(factText(m.Facts, "os", "os_version")), orDashText(factText(m.Facts, "kernel")),
			len(m.Modules), plugins, data)
	}
	return tw.Flush()
}

func hasData(m overlord.InventoryMinion) bool {
	return m.MinionVersion != "" || m.Facts != nil || m.Modules != nil
}

// factText joins the values of the named facts that are there.
func factText(facts map[string]any, names ...string) string {
	var parts []string
	for _, n := range names {
		if v, ok := facts[n]; ok {
			parts = append(parts, valueText(v))
		}
	}
	return strings.Join(parts, " ")
}

func orDashText(s string) string {
	if s == "" {
		return "-"
	}
	return termtext.Line(s)
}

// showMinion prints everything recorded of one minion.
func showMinion(w io.Writer, name string, m overlord.InventoryMinion) error {
	head := name
	if m.MinionVersion != "" {
		head += "  minion " + termtext.Line(m.MinionVersion)
	}
	switch m.State {
	case overlord.InventoryUnreachable:
		head += "  " + unreachableText(m.Error, m.AsOf, m.AsOfAt)
	case overlord.InventoryKept:
		head += "  kept: outside this version's target"
		if m.Error != nil {
			head += termtext.Line(fmt.Sprintf(", unreachable when last asked (%s: %s)", m.Error.Kind, oneLine(m.Error.Message)))
		}
		if m.AsOfAt != nil {
			head += "; data as of " + versionLine(m.AsOf, *m.AsOfAt)
		}
	default:
		head += "  " + m.State
	}
	fmt.Fprintln(w, head)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(m.Facts) > 0 {
		fmt.Fprintln(tw, "  facts:")
		for _, k := range sortedNames(m.Facts) {
			fmt.Fprintf(tw, "    %s\t%s\n", termtext.Line(k), valueText(m.Facts[k]))
		}
	}
	if len(m.Modules) > 0 {
		fmt.Fprintln(tw, "  modules:")
		for _, k := range sortedNames(m.Modules) {
			fmt.Fprintf(tw, "    %s\t%s\n", termtext.Line(k), moduleText(m.Modules[k]))
		}
	}
	return tw.Flush()
}

// moduleText describes a module on one line: plugin, version and
// checksum if it is one, and its methods (or why it is broken).
func moduleText(m overlord.InventoryModule) string {
	var parts []string
	if m.Plugin {
		p := "plugin"
		if m.Version != "" {
			p += " " + m.Version
		}
		if m.SHA256 != "" {
			p += " sha256 " + shortSum(m.SHA256)
		}
		parts = append(parts, p)
	}
	if m.Error != "" {
		parts = append(parts, "BROKEN: "+oneLine(m.Error))
	} else {
		parts = append(parts, strings.Join(m.Methods, " "))
	}
	return termtext.Line(strings.Join(parts, "  "))
}
