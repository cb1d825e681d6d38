package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func (a *App) minionSetCmd() *cobra.Command {
	var via string
	cmd := &cobra.Command{
		Use:   "set NAME --via GW[,GW2...]",
		Short: "Change how a minion is reached: through gateways, or directly",
		Long: `Set the gateways that reach a registered minion, the first preferred
(see 'overlord gateway'); --via '' reaches it directly again.`,
		Example: `  overlord minion set web1 --via gw-eu,gw-eu2
  overlord minion set web1 --via ''`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("via") {
				return usageError("nothing to set: give --via GW[,GW2...] (or --via '' for direct)")
			}
			list, err := parseVia(via)
			if err != nil {
				return err
			}
			if err := a.overlord().Store.SetVia(args[0], list); err != nil {
				return err
			}
			if len(list) == 0 {
				fmt.Fprintf(a.Stdout, "minion %s is reached directly\n", args[0])
			} else {
				fmt.Fprintf(a.Stdout, "minion %s is reached via %s\n", args[0], strings.Join(list, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&via, "via", "", "the gateways that reach it, comma-separated, the first preferred ('' for none)")
	return cmd
}

// parseVia reads --via: gateway names, comma-separated.
func parseVia(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			return nil, usageError("--via %q: an empty gateway name", s)
		}
		out = append(out, n)
	}
	return out, nil
}
