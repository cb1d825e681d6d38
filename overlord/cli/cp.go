package cli

import (
	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

// fileCmd builds cp and fetch, which share their flags and output.
func (a *App) fileCmd(use, short, long, example, method string,
	run func(cmd *cobra.Command, o *overlord.Overlord, p *overlord.Prepared, args []string, onResult func(string, status.Result)) (status.Job, error),
	remoteArg int) *cobra.Command {
	var (
		format string
		spec   overlord.CallSpec
		raw    bool
		disp   display
	)
	cmd := &cobra.Command{
		Use: use, Short: short, Long: long, Example: example,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			tgt, _, err := overlord.SplitRemote(args[remoteArg])
			if err != nil {
				return usageError("%v", err)
			}
			if spec.Forks < 1 {
				return usageError("--forks must be at least 1, got %d", spec.Forks)
			}
			if spec.Timeout <= 0 {
				return usageError("--timeout must be positive, got %s", spec.Timeout)
			}
			if err := checkRaw(raw, format); err != nil {
				return err
			}
			spec.Target, spec.Module, spec.Method = tgt, "file", method
			o := a.overlordVia(cmd)
			p, err := a.prepare(o, spec)
			if err != nil {
				return err
			}
			return a.runPrinted(format, raw, &disp, p.JobID, len(p.Minions), func(onResult func(string, status.Result)) (status.Job, error) {
				return run(cmd, o, p, args, onResult)
			})
		},
	}
	f := cmd.Flags()
	f.IntVar(&spec.Forks, "forks", fanout.DefaultForks, "at most this many minions at once")
	f.DurationVar(&spec.Timeout, "timeout", overlord.DefaultCallTimeout, "time limit of each chunk's round trip")
	f.StringArrayVar(&spec.Where, "where", nil, "only minions whose cached facts match KEY OP VALUE; repeatable")
	batchFlags(cmd, &spec)
	spec.OnBatch = disp.Batch // the progress line's "batch k/n"
	rawFlag(cmd, &raw)
	outputFlag(cmd, &format)
	displayFlags(cmd, &disp)
	a.directFlag(cmd)
	return cmd
}

func (a *App) cpCmd() *cobra.Command {
	return a.fileCmd("cp LOCAL TARGET:PATH", "Copy a file to every minion a target matches",
		`Stream LOCAL to PATH on every minion TARGET matches, in 1 MiB chunks, at
most --forks minions at once. Each minion writes it to a temporary name
beside PATH, checks its sha256, gives it LOCAL's mode and renames it into
place: PATH is never seen half-written, and a failed copy leaves nothing.
PATH must be absolute; a PATH ending in / gets LOCAL's name. Recorded as a
job (file.cp) with a result per minion, like any call.`,
		`  overlord cp ./nginx.conf 'web*':/etc/nginx/nginx.conf
  overlord cp ./tool @ops:/usr/local/bin/ --forks 8 -o json`,
		"cp",
		func(cmd *cobra.Command, o *overlord.Overlord, p *overlord.Prepared, args []string, onResult func(string, status.Result)) (status.Job, error) {
			_, dest, _ := overlord.SplitRemote(args[1])
			return o.Copy(cmd.Context(), p, args[0], dest+trailingSlash(args[1]), onResult)
		}, 1)
}

func (a *App) fetchCmd() *cobra.Command {
	return a.fileCmd("fetch TARGET:PATH LOCALDIR", "Copy a file from every minion a target matches",
		`Copy PATH from every minion TARGET matches into LOCALDIR/<minion>/<name>,
through a temporary file, checked against the sha256 the minion computes,
with the minion's file mode. Recorded as a job (file.fetch).`,
		`  overlord fetch 'web*':/var/log/nginx/error.log ./logs
  ls logs/web1/error.log`,
		"fetch",
		func(cmd *cobra.Command, o *overlord.Overlord, p *overlord.Prepared, args []string, onResult func(string, status.Result)) (status.Job, error) {
			_, remote, _ := overlord.SplitRemote(args[0])
			return o.Fetch(cmd.Context(), p, remote, args[1], onResult)
		}, 0)
}

func trailingSlash(s string) string {
	if len(s) > 0 && s[len(s)-1] == '/' {
		return "/"
	}
	return ""
}
