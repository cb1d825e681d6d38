package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/internal/termtext"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

func (a *App) inventoryDiffCmd() *cobra.Command {
	var (
		format   string
		exitCode bool
	)
	cmd := &cobra.Command{
		Use:   "diff [OLD [NEW]]",
		Short: "Print what changed per minion between two inventory versions",
		Long: `Print what changed between two versions of the inventory, per minion:
facts added, removed or changed, modules and methods added or removed,
plugin versions and checksums changed, the minion's version, and minions
added, removed (no longer registered) or unreachable. The versions are
the last two by default; OLD alone is compared with the newest. Each is a
version number, a time or a duration ago, as 'inventory show --at' takes
them.

uptime_seconds changes by itself and is never reported. A minion
unreachable in NEW is listed with why and the version its data is from,
whether or not anything else changed.`,
		Example: `  overlord inventory diff
  overlord inventory diff 3 7
  overlord inventory diff 24h -o json | jq '.minions | keys'
  overlord inventory diff --exit-code || mail -s 'the fleet changed' ops`,
		Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := a.overlord()
			var vs [2]int
			for i, arg := range args {
				v, err := resolveVersion(o, arg)
				if err != nil {
					return err
				}
				vs[i] = v
			}
			d, err := o.InventoryDiff(vs[0], vs[1])
			if err != nil {
				return err
			}
			switch format {
			case formatJSON:
				err = writeJSON(a.Stdout, d)
			case formatYAML:
				err = writeYAML(a.Stdout, d)
			default:
				err = printDiff(a.Stdout, d)
			}
			if err != nil {
				return err
			}
			if exitCode && d.Summary.Changed > 0 {
				return exitFor(status.ExitFailed)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&exitCode, "exit-code", false, "exit 1 if a minion changed (as git diff --exit-code)")
	outputFlag(cmd, &format, formatText, formatJSON, formatYAML)
	return cmd
}

// printDiff prints a diff for people: a line per minion, then a line per
// change under it, aligned.
func printDiff(w io.Writer, d overlord.InventoryDiff) error {
	fmt.Fprintf(w, "inventory %s -> %s: %d of %s changed (%d added, %d removed), %d unreachable\n",
		versionLine(d.Old, d.OldAt), versionLine(d.New, d.NewAt), d.Summary.Changed, fmt.Sprintf("%d minion%s", d.Summary.Minions, plural(d.Summary.Minions)),
		d.Summary.Added, d.Summary.Removed, d.Summary.Unreachable)
	if len(d.Minions) == 0 {
		fmt.Fprintln(w, "no changes")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, n := range d.Names() {
		m := d.Minions[n]
		fmt.Fprintln(tw, n+"  "+diffHead(m))
		for _, l := range diffLines(m) {
			fmt.Fprintln(tw, l)
		}
	}
	return tw.Flush()
}

// diffHead says what became of a minion.
func diffHead(m overlord.InventoryMinionDiff) string {
	switch {
	case m.Change == overlord.InventoryRemoved:
		return "removed (no longer registered)"
	case m.Change == overlord.InventoryAdded && m.State == overlord.InventoryUnreachable:
		return "added, " + unreachableText(m.Error, m.AsOf, m.AsOfAt)
	case m.Change == overlord.InventoryAdded:
		return "added"
	case m.State == overlord.InventoryUnreachable:
		s := unreachableText(m.Error, m.AsOf, m.AsOfAt)
		if m.OldState != "" {
			s = "now " + s
		} else {
			s = "still " + s
		}
		return s
	case m.OldState != "":
		return "changed: answers again (was unreachable)"
	}
	return m.Change
}

// diffLines are the changes of one minion: "  ±~ WHAT\tNAME\tDETAIL".
func diffLines(m overlord.InventoryMinionDiff) []string {
	var lines []string
	if c := m.MinionVersion; c != nil {
		lines = append(lines, fmt.Sprintf("  ~ minion\tversion\t%s -> %s", valueText(c.Old), valueText(c.New)))
	}
	if f := m.Facts; f != nil {
		keys := map[string]bool{}
		for _, set := range []map[string]any{f.Added, f.Removed} {
			for k := range set {
				keys[k] = true
			}
		}
		for k := range f.Changed {
			keys[k] = true
		}
		for _, k := range sortedNames(keys) {
			name := termtext.Line(k)
			if v, ok := f.Added[k]; ok {
				lines = append(lines, fmt.Sprintf("  + fact\t%s\t%s", name, valueText(v)))
			}
			if v, ok := f.Removed[k]; ok {
				lines = append(lines, fmt.Sprintf("  - fact\t%s\t%s", name, valueText(v)))
			}
			if c, ok := f.Changed[k]; ok {
				lines = append(lines, fmt.Sprintf("  ~ fact\t%s\t%s -> %s", name, valueText(c.Old), valueText(c.New)))
			}
		}
	}
	if mods := m.Modules; mods != nil {
		for _, k := range sortedNames(mods.Added) {
			lines = append(lines, fmt.Sprintf("  + module\t%s\t%s", termtext.Line(k), moduleText(mods.Added[k])))
		}
		for _, k := range sortedNames(mods.Removed) {
			lines = append(lines, fmt.Sprintf("  - module\t%s\t%s", termtext.Line(k), moduleText(mods.Removed[k])))
		}
		for _, k := range sortedNames(mods.Changed) {
			lines = append(lines, fmt.Sprintf("  ~ module\t%s\t%s", termtext.Line(k), moduleChangeText(mods.Changed[k])))
		}
	}
	return lines
}

// moduleChangeText lists what changed of a module, on one line.
func moduleChangeText(c overlord.InventoryModuleChange) string {
	var parts []string
	for _, m := range c.MethodsAdded {
		parts = append(parts, "+ method "+m)
	}
	for _, m := range c.MethodsRemoved {
		parts = append(parts, "- method "+m)
	}
	change := func(what string, v *overlord.InventoryValueChange, short func(string) string) {
		if v == nil {
			return
		}
		o, n := fmt.Sprint(v.Old), fmt.Sprint(v.New)
		if short != nil {
			o, n = short(o), short(n)
		}
		parts = append(parts, fmt.Sprintf("%s %s -> %s", what, orDashText(o), orDashText(n)))
	}
	change("version", c.Version, nil)
	change("sha256", c.SHA256, shortSum)
	change("plugin", c.Plugin, nil)
	change("error", c.Error, oneLine)
	return termtext.Line(strings.Join(parts, "; "))
}
