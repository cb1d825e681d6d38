package cli

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/internal/termtext"
	"github.com/overlordhq/overlord/overlord"
)

func (a *App) inventoryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "Record versions of the fleet's facts, modules and plugins, and diff them",
		Long: `The inventory is a history of what the fleet is: each version records
every minion's facts, its modules with their methods, and its plugins'
versions and SHA-256 checksums, in overlord.db. 'inventory snapshot' takes
a version (so does 'overlord serve --inventory-every'); 'inventory diff'
says what changed between two, per minion; 'inventory show' prints one;
'inventory list' lists them. See docs/inventory.md.`,
		Example: `  overlord inventory snapshot
  overlord inventory diff
  overlord inventory show web1 --at 24h`,
	}
	cmd.AddCommand(a.inventorySnapshotCmd(), a.inventoryListCmd(), a.inventoryShowCmd(), a.inventoryDiffCmd())
	return groupCommand(cmd)
}

// resolveVersion turns a version as typed (number, time, duration ago)
// into a version number; "" is 0, the newest.
func resolveVersion(o *overlord.Overlord, s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	ref, err := overlord.ParseInventoryRef(s, time.Now())
	if err != nil {
		return 0, usageError("%v", err)
	}
	return o.InventoryResolve(ref)
}

// versionLine describes a version for people: "version 4 (2026-11-21 14:00:00)".
func versionLine(v int, at time.Time) string {
	return fmt.Sprintf("version %d (%s)", v, at.Local().Format(time.DateTime))
}

// valueText renders a fact's value on one line: strings as they are,
// whole numbers without an exponent, anything else as JSON. What a minion
// said never drives the terminal.
func valueText(v any) string {
	switch x := v.(type) {
	case string:
		return termtext.Line(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return termtext.Line(string(data))
}

// shortSum is the start of a SHA-256 that text shows.
func shortSum(s string) string {
	if len(s) > shaShown {
		return s[:shaShown]
	}
	return s
}

// bytesText writes a size for people: 812 B, 14.2 KiB, 3.1 MiB.
func bytesText(n int) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
