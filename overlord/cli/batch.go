package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/overlordhq/overlord/overlord"
)

// batchFlags adds --batch, --batch-wait and --max-fail to a fleet command
// (call, script, cp) and checks them together before it runs: a usage
// error (exit 2) for a combination that makes no sense. Call it after
// setting cmd.PreRunE, if the command has one: the check runs first.
func batchFlags(cmd *cobra.Command, spec *overlord.CallSpec) {
	f := cmd.Flags()
	f.Var(&countFlag{dst: &spec.Batch.Size, min: 1}, "batch",
		"run the target N minions (or N% of them, rounded up) at a time, each batch when the previous one has finished")
	f.DurationVar(&spec.Batch.Wait, "batch-wait", 0, "with --batch, pause this long between batches")
	f.Var(&maxFailFlag{dst: &spec.Batch.MaxFail}, "max-fail",
		"with --batch, start no new batch once more than N minions (or N% of the target) have failed; the rest end skipped (default: no limit)")
	if ex, ok := batchExamples[cmd.Name()]; ok {
		cmd.Example += "\n" + ex
	}
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if err := spec.Batch.Check(); err != nil {
			return usageError("%v", err)
		}
		if prev != nil {
			return prev(c, args)
		}
		return nil
	}
}

// batchExamples are the --help examples of --batch, by command.
var batchExamples = map[string]string{
	"call":   `  overlord call 'web*' command.run 'systemctl restart app' --batch 25% --batch-wait 30s --max-fail 0`,
	"script": `  overlord script 'web*' ./upgrade.sh --batch 2 --max-fail 10%`,
	"cp":     `  overlord cp ./app.conf 'web*':/etc/app.conf --batch 5`,
	"fetch":  `  overlord fetch 'web*':/var/log/app.log ./logs --batch 10`,
}

// countFlag is --batch: N or N%, at least min.
type countFlag struct {
	dst *overlord.Count
	min int
}

var _ pflag.Value = (*countFlag)(nil)

func (c *countFlag) String() string {
	if c.dst == nil || c.dst.N == 0 {
		return ""
	}
	return c.dst.String()
}

func (c *countFlag) Set(s string) error {
	n, err := overlord.ParseCount(s)
	if err != nil {
		return err
	}
	if n.N < c.min {
		return fmt.Errorf("want at least %d (or %d%%), got %q", c.min, c.min, s)
	}
	*c.dst = n
	return nil
}

func (c *countFlag) Type() string { return "N|N%" }

// maxFailFlag is --max-fail: N or N%, 0 allowed; unset means no limit.
type maxFailFlag struct {
	dst **overlord.Count
}

var _ pflag.Value = (*maxFailFlag)(nil)

func (m *maxFailFlag) String() string {
	if m.dst == nil || *m.dst == nil {
		return ""
	}
	return (*m.dst).String()
}

func (m *maxFailFlag) Set(s string) error {
	n, err := overlord.ParseCount(s)
	if err != nil {
		return err
	}
	*m.dst = &n
	return nil
}

func (m *maxFailFlag) Type() string { return "N|N%" }
