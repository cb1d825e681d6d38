// Package cli is the overlord's command line: one verb per file, each
// command built from an App that carries the IO streams and environment,
// so tests run commands in-process.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/internal/buildinfo"
	"github.com/overlordhq/overlord/internal/termtext"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
	"github.com/overlordhq/overlord/target"
)

// App holds what every command needs: IO streams, the environment and the
// global flags.
type App struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// IsTerminal reports whether a stream is a terminal (the progress
	// line); nil checks an *os.File. Tests set it.
	IsTerminal func(io.Writer) bool

	stateDir     string
	stateDirFrom string // where stateDir came from: a flag, the environment or the default
	identityFile string
	lockTimeout  time.Duration
	// storeAddr is --store or OVERLORD_STORE ("": the state directory's
	// overlord.db), store the store it names, opened once (openStore).
	storeAddr string
	storeFrom string // where storeAddr came from (store_addr.go)
	etcdOpts  jobs.Options
	store     *jobs.Store
	verbose   bool
	direct    bool // --direct: never through the service
	// args is the command line as Main got it (nil otherwise): the words
	// after a stray flag, which pflag does not parse, for its hint.
	args []string
}

// ExitError ends a command with a given exit code. Err, if set, is printed.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Main runs the overlord CLI with args and returns the exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := &App{Stdin: stdin, Stdout: stdout, Stderr: stderr, Getenv: os.Getenv, args: args}
	root := app.Root()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if app.store != nil {
		app.store.Close()
	}
	if err == nil {
		return status.ExitOK
	}
	if errors.Is(err, syscall.EPIPE) {
		// The reader went away (| head): not an error worth a word.
		return status.ExitOK
	}
	code := ExitCode(err)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Err != nil {
		msg, hint := err.Error(), hintFor(err)
		if errors.Is(err, jobs.ErrNoStore) && app.storeAddr == "" {
			msg, hint = app.noStore()
		}
		// An error may quote what a minion sent: show it, do not let it
		// drive the terminal.
		fmt.Fprintf(stderr, "Error: %s\n", termtext.Visible(msg))
		if hint != "" {
			fmt.Fprintf(stderr, "Try: %s\n", hint)
		}
	}
	return code
}

// ExitCode maps an error from a command to the CLI's exit code.
func ExitCode(err error) int {
	var ee *ExitError
	switch {
	case err == nil:
		return status.ExitOK
	case errors.As(err, &ee):
		return ee.Code
	case errors.Is(err, overlord.ErrNoMatch):
		return status.ExitNoMatch
	}
	return status.ExitUsage
}

// noStore explains a missing overlord.db: which directory was looked in
// and why that one, since a second 'ca init' in the wrong place (as under
// sudo, which drops OVERLORD_STATE_DIR) makes a second CA that no minion
// trusts.
func (a *App) noStore() (msg, hint string) {
	msg = fmt.Sprintf("no overlord.db in %s (%s)", a.stateDir, a.stateDirFrom)
	hint = "overlord --state-dir DIR ... (or OVERLORD_STATE_DIR=DIR, which sudo drops) if the overlord's state is elsewhere;" +
		" overlord ca init only to start a new CA here"
	return msg, hint
}

// hintFor returns the command that usually fixes err, or "". A missing
// overlord.db is explained by App.noStore instead.
func hintFor(err error) string {
	switch {
	case errors.Is(err, overlord.ErrNoMatch):
		return "overlord minion list"
	case errors.Is(err, target.ErrUnknownGroup):
		return "overlord group list"
	case errors.Is(err, jobs.ErrNotPending):
		return "overlord certs list --state pending"
	case errors.As(err, new(*argsError)):
		var ae *argsError
		errors.As(err, &ae)
		return ae.cmd.CommandPath() + " --help"
	case errors.Is(err, overlord.ErrNoService):
		return "overlord serve --ui 127.0.0.1:8080 (or systemctl start overlord, with --ui in its unit)"
	case errors.Is(err, overlord.ErrNoUI):
		return "restart the service with --ui ADDR (systemctl edit overlord)"
	case errors.Is(err, jobs.ErrLocked):
		return "run the command again; raise --lock-timeout if the store stays busy"
	}
	return ""
}

// Root returns the root command.
func (a *App) Root() *cobra.Command {
	root := &cobra.Command{
		Use:   "overlord",
		Short: "Run commands across a fleet of minions over mutual TLS",
		Long: `overlord calls module methods on a fleet of minions over JSON-RPC with
mutual TLS, records every call as a job in overlord.db, and prints the
results for people (text) and for scripts (json, ndjson, yaml).`,
		Example: `  overlord ca init
  overlord minion add web1 --addr 10.0.0.11:51234 --bundle-out web1.pem
  overlord call '*' test.ping
  overlord call 'web*,!web3' command.run 'systemctl reload nginx' -o json`,
		Version:       buildinfo.Version(),
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			a.stateDirFrom = "from --state-dir"
			if a.stateDir == "" {
				a.stateDir, a.stateDirFrom = a.Getenv("OVERLORD_STATE_DIR"), "from OVERLORD_STATE_DIR"
			}
			if a.stateDir == "" {
				a.stateDir, a.stateDirFrom = overlord.DefaultStateDir(), "the default: neither --state-dir nor OVERLORD_STATE_DIR is set"
			}
			if a.identityFile == "" {
				a.identityFile = a.Getenv("OVERLORD_IDENTITY")
			}
			return a.openStore()
		},
	}
	// Suggest only near misses (cal, minon) and the words commands list in
	// SuggestFor: at distance 2, "cmd" would suggest ca and cp.
	root.SuggestionsMinimumDistance = 1
	root.SetIn(a.Stdin)
	root.SetOut(a.Stdout)
	root.SetErr(a.Stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &ExitError{Code: status.ExitUsage, Err: err}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.stateDir, "state-dir", "", "state directory (env OVERLORD_STATE_DIR; default ~/.local/state/overlord)")
	pf.StringVar(&a.identityFile, "identity", "", "use this bundle as the client identity (env OVERLORD_IDENTITY)")
	pf.DurationVar(&a.lockTimeout, "lock-timeout", jobs.DefaultLockTimeout, "how long to wait for overlord.db's lock (or for etcd to answer)")
	pf.StringVar(&a.storeAddr, "store", "", "the store: `ADDRESS` PATH, bbolt:PATH or etcd://HOST:2379[,HOST:2379...][/PREFIX] (env OVERLORD_STORE; default: the state directory's overlord.db; docs/ha.md)")
	pf.StringVar(&a.etcdOpts.EtcdCert, "etcd-cert", "", "client certificate (PEM) for an etcd store over TLS (env OVERLORD_ETCD_CERT)")
	pf.StringVar(&a.etcdOpts.EtcdKey, "etcd-key", "", "its private key (env OVERLORD_ETCD_KEY)")
	pf.StringVar(&a.etcdOpts.EtcdCA, "etcd-ca", "", "the CA of the etcd servers' certificates (env OVERLORD_ETCD_CA)")
	pf.BoolVarP(&a.verbose, "verbose", "v", false, "log debug detail to stderr")

	root.AddCommand(a.caCmd(), a.minionCmd(), a.gatewayCmd(), a.groupCmd(), a.callCmd(), a.scriptCmd(), a.cpCmd(), a.fetchCmd(), a.jobCmd(), a.modulesCmd(),
		a.serveCmd(), a.tokenCmd(), a.certsCmd(), a.transmitCmd(), a.inventoryCmd(), a.uiCmd(), a.storeCmd())
	a.addCompletions(root)
	sayUsage(root)
	return root
}

// argsError is a command given the wrong number of arguments: cobra's
// count, after the command line the command wants.
type argsError struct {
	cmd *cobra.Command
	err error
}

func (e *argsError) Error() string {
	return fmt.Sprintf("%s: %v", strings.TrimSuffix(e.cmd.UseLine(), " [flags]"), e.err)
}

func (e *argsError) Unwrap() error { return e.err }

// sayUsage makes the argument count errors of cmd and its subcommands
// say which arguments the command takes (cobra's own say only how many:
// "requires at least 2 arg(s), only received 1").
func sayUsage(cmd *cobra.Command) {
	if check := cmd.Args; check != nil {
		c := cmd
		cmd.Args = func(cc *cobra.Command, args []string) error {
			if err := check(cc, args); err != nil {
				return &argsError{cmd: c, err: err}
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		sayUsage(sub)
	}
}

func (a *App) overlord() *overlord.Overlord {
	level := slog.LevelWarn
	if a.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(a.Stderr, &slog.HandlerOptions{Level: level}))
	return a.overlordWith(logger)
}

// overlordWith returns the engine on the store --store (or
// OVERLORD_STORE) names, logging to logger.
func (a *App) overlordWith(logger *slog.Logger) *overlord.Overlord {
	if a.store == nil {
		return overlord.New(a.stateDir, a.identityFile, a.lockTimeout, logger)
	}
	return overlord.NewWithStore(a.stateDir, a.identityFile, a.store, logger)
}

// overlordVia returns the engine for a command that goes through the
// overlord service when one answers on the state directory (call, script,
// cp, fetch, job status, list, cancel and purge), unless --direct. -v
// says which way it works.
func (a *App) overlordVia(cmd *cobra.Command) *overlord.Overlord {
	o := a.overlord()
	how := "direct: --direct"
	if !a.direct {
		how, _ = o.UseService(cmd.Context())
	}
	o.Logger.Info(how)
	return o
}

// directFlag adds --direct to a command that may go through the service.
func (a *App) directFlag(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&a.direct, "direct", false, "work directly, not through the overlord service (overlord serve) even if it runs")
}

// usageError marks err as a usage error (exit 2).
func usageError(format string, args ...any) error {
	return &ExitError{Code: status.ExitUsage, Err: fmt.Errorf(format, args...)}
}

// groupCommand makes cmd, a command that only holds subcommands, refuse
// an unknown subcommand (exit 2) instead of printing help and exiting 0.
func groupCommand(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageError("unknown command %q for %q (see '%s --help')", args[0], c.CommandPath(), c.CommandPath())
		}
		return c.Help()
	}
	return cmd
}
