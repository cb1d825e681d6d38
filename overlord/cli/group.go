package cli

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/certs"
)

func (a *App) groupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "group",
		Short: "Name sets of minions for targets (@group)",
	}
	cmd.AddCommand(a.groupAddCmd(), a.groupListCmd(), a.groupRemoveCmd())
	return groupCommand(cmd)
}

func (a *App) groupAddCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "add GROUP MINION...",
		Short:   "Add minions to a group, creating it if needed",
		Example: "  overlord group add web web1 web2 web3\n  overlord call @web test.ping",
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := certs.CheckName(args[0]); err != nil {
				return usageError("group name: %v", err)
			}
			if err := a.overlord().Store.AddToGroup(args[0], args[1:]); err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "group %s: added %s\n", args[0], strings.Join(args[1:], " "))
			return nil
		},
	}
}

func (a *App) groupListCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List groups and their members",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inv, err := a.overlord().Store.Inventory()
			if err != nil {
				return err
			}
			switch format {
			case formatJSON:
				return writeJSON(a.Stdout, inv.Groups)
			case formatYAML:
				return writeYAML(a.Stdout, inv.Groups)
			}
			names := make([]string, 0, len(inv.Groups))
			for n := range inv.Groups {
				names = append(names, n)
			}
			sort.Strings(names)
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "GROUP\tMEMBERS")
			for _, n := range names {
				fmt.Fprintf(tw, "%s\t%s\n", n, strings.Join(inv.Groups[n], " "))
			}
			return tw.Flush()
		},
	}
	outputFlag(cmd, &format, formatText, formatJSON, formatYAML)
	return cmd
}

func (a *App) groupRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "remove GROUP [MINION...]",
		Short:   "Delete a group, or remove only the given members",
		Example: "  overlord group remove web web3\n  overlord group remove web",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.overlord().Store.RemoveGroup(args[0], args[1:]); err != nil {
				return err
			}
			if len(args) == 1 {
				fmt.Fprintf(a.Stdout, "group %s removed\n", args[0])
			} else {
				fmt.Fprintf(a.Stdout, "group %s: removed %s\n", args[0], strings.Join(args[1:], " "))
			}
			return nil
		},
	}
}
