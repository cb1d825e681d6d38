package cli

import (
	"encoding/json"
	"errors"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

func (a *App) transmitCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "transmit < REQUEST.json",
		Short: "Make a call described by one JSON request on standard input",
		Long: `Read one JSON request on standard input and make the call it describes,
as 'overlord call' would with the same flags, then write the same JSON
document 'call -o json' writes (for "async": true, {"job_id", "state"}),
with the same exit codes. For scripts and other programs.

The request's fields (all but target, module and method may be left out):

  target           the target expression, as call's TARGET
  module, method   what to call
  args             the method's arguments by name, typed as JSON: {"cmd": "uptime"}
  async            true: submit the job and print its ID at once
  timeout          "30s": how long to wait (sync), the job's deadline (async)
  connect_timeout  "5s"
  forks            at most this many minions at once
  batch            "5" or "25%"; batch_wait "30s"; max_fail "2" or "10%"
  queue            with async: minions out of reach get the job when back
  where            ["os=debian"]: only minions whose cached facts match

A request that is not one JSON object, names a field not above, or
asks for something call would refuse, is a usage error (exit 2) with a
JSON document {"error": {"kind", "message"}} on standard output. It goes
through the overlord service when one runs, like call (--direct skips it).`,
		Example: `  echo '{"target": "web*", "module": "command", "method": "run", "args": {"cmd": "uptime"}}' | overlord transmit
  overlord transmit < deploy.json | jq .summary`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := a.transmitRun()
			if err == nil {
				err = a.call(cmd, r)
			}
			var ee *ExitError
			if err != nil && (!errors.As(err, &ee) || ee.Err != nil) && ExitCode(err) != status.ExitOK {
				// Nothing was printed: say why on standard output too,
				// for the program that reads it.
				// Usage and a target that matches nothing (exit 2, 3)
				// are the request's fault; anything else is internal.
				kind := status.KindInternal
				if c := ExitCode(err); c == status.ExitUsage || c == status.ExitNoMatch {
					kind = status.KindBadArgs
				}
				doc := map[string]any{"error": map[string]string{"kind": string(kind), "message": err.Error()}}
				if perr := json.NewEncoder(a.Stdout).Encode(doc); perr != nil {
					return perr
				}
			}
			return err
		},
	}
	a.directFlag(cmd)
	return cmd
}

// transmitRun reads the request from standard input and turns it into the
// call it describes.
func (a *App) transmitRun() (callRun, error) {
	r := callRun{format: "json", noStdin: true}
	if a.Stdin == nil {
		return r, usageError("no request: give one JSON object on standard input")
	}
	req, err := overlord.DecodeCallRequest(a.Stdin)
	if err == nil {
		r.spec, err = req.Spec()
	}
	if err != nil {
		return r, usageError("%s (see overlord transmit --help)", overlord.RequestMessage(err))
	}
	// The spec's timeout is the request's, or the default of its kind.
	r.async, r.queue, r.timeoutSet = req.Async, req.Queue, true
	return r, nil
}
