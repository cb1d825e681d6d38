package cli

import (
	"fmt"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/internal/termtext"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

func (a *App) inventorySnapshotCmd() *cobra.Command {
	var (
		format string
		opts   overlord.SnapshotOptions
	)
	cmd := &cobra.Command{
		Use:   "snapshot [TARGET]",
		Short: "Record the facts, modules and plugins of minions as a new inventory version",
		Long: `Ask every minion TARGET matches (default '*') for its facts (facts.all) and
its modules (with their methods, and each plugin's version and SHA-256),
and record the answers as a new version of the inventory in overlord.db.

A minion that does not answer is recorded unreachable, with the data it
gave last kept and marked with the version it is from; registered minions
outside TARGET keep their entries as they were; minions no longer
registered are left out. Only the newest --keep versions are kept:
overlord.db remembers the last --keep given (here or by 'overlord serve
--inventory-keep'), 100 until one is.
Records no job; the facts refresh those --where reads.

Exits 1 if a minion of the version is unreachable, 3 if TARGET matches
no minion.`,
		Example: `  overlord inventory snapshot
  overlord inventory snapshot 'web*' --keep 500
  overlord inventory snapshot -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Forks < 1 || opts.Timeout <= 0 {
				return usageError("--forks must be at least 1 and --timeout positive")
			}
			if opts.Keep < 0 || (opts.Keep == 0 && cmd.Flags().Changed("keep")) {
				return usageError("--keep must be at least 1")
			}
			target := "*"
			if len(args) == 1 {
				target = args[0]
			}
			o := a.overlordVia(cmd)
			v, err := o.InventorySnapshot(cmd.Context(), target, opts)
			if err != nil {
				return err
			}
			switch format {
			case formatJSON:
				err = writeJSON(a.Stdout, v)
			case formatYAML:
				err = writeYAML(a.Stdout, v)
			default:
				err = a.printSnapshot(o, v)
			}
			if err != nil {
				return err
			}
			if v.Unreachable > 0 {
				return exitFor(status.ExitFailed)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&opts.Keep, "keep", 0, fmt.Sprintf("keep the newest `N` versions from now on, deleting older ones; overlord.db remembers N (default: the last N given, else %d)", overlord.DefaultInventoryKeep))
	cmd.Flags().IntVar(&opts.Forks, "forks", fanout.DefaultForks, "at most this many minions asked at once")
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", overlord.DefaultCallTimeout, "time limit of each minion's answers")
	outputFlag(cmd, &format, formatText, formatJSON, formatYAML)
	a.directFlag(cmd)
	return cmd
}

// printSnapshot says what a snapshot recorded, and which minions did not
// answer.
func (a *App) printSnapshot(o *overlord.Overlord, v overlord.InventoryVersion) error {
	changed := fmt.Sprintf("%d changed since the version before", v.Changed)
	if v.Version == 1 {
		changed = "the first version"
	}
	fmt.Fprintf(a.Stdout, "inventory %s: %d minion%s, %s, %d unreachable\n",
		versionLine(v.Version, v.At), v.Minions, plural(v.Minions), changed, v.Unreachable)
	if v.Unreachable == 0 {
		return nil
	}
	inv, err := o.InventoryAt(v.Version)
	if err != nil {
		return err
	}
	var names []string
	for n, m := range inv.Minions {
		if m.State == overlord.InventoryUnreachable {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(a.Stdout, "  %s: %s\n", n, unreachableText(inv.Minions[n].Error, inv.Minions[n].AsOf, inv.Minions[n].AsOfAt))
	}
	return nil
}

// unreachableText says why a minion did not answer and where its data is
// from.
func unreachableText(e *status.Error, asOf int, asOfAt *time.Time) string {
	s := "UNREACHABLE"
	if e != nil {
		s += termtext.Line(fmt.Sprintf(" (%s: %s)", e.Kind, oneLine(e.Message)))
	}
	if asOf != 0 && asOfAt != nil {
		s += "; data as of " + versionLine(asOf, *asOfAt)
	} else {
		s += "; no data recorded yet"
	}
	return s
}
