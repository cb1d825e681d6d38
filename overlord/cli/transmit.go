package cli

import (
	"encoding/json"
	"errors"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

// transmitRequest is overlord transmit's request: call's flags as JSON.
type transmitRequest struct {
	Target         string         `json:"target"`
	Module         string         `json:"module"`
	Method         string         `json:"method"`
	Args           map[string]any `json:"args"`
	Async          bool           `json:"async"`
	Timeout        string         `json:"timeout"`
	ConnectTimeout string         `json:"connect_timeout"`
	Forks          int            `json:"forks"`
	Batch          string         `json:"batch"`
	BatchWait      string         `json:"batch_wait"`
	MaxFail        string         `json:"max_fail"`
	Queue          bool           `json:"queue"`
	Where          []string       `json:"where"`
}

// maxTransmitRequest bounds the request read from standard input.
const maxTransmitRequest = 8 << 20

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
	dec := json.NewDecoder(io.LimitReader(a.Stdin, maxTransmitRequest+1))
	dec.DisallowUnknownFields()
	var req transmitRequest
	if err := dec.Decode(&req); err != nil {
		return r, usageError("the request is not a JSON object of transmit's fields (see overlord transmit --help): %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return r, usageError("the request is one JSON object; there is more after it")
	}
	if req.Target == "" || req.Module == "" || req.Method == "" {
		return r, usageError("the request needs target, module and method")
	}
	spec := overlord.CallSpec{Target: req.Target, Module: req.Module, Method: req.Method, Args: req.Args, Where: req.Where,
		Forks: fanout.DefaultForks, Timeout: overlord.DefaultCallTimeout, ConnectTimeout: overlord.DefaultConnectTimeout}
	if spec.Args == nil {
		spec.Args = map[string]any{}
	}
	if req.Forks != 0 {
		spec.Forks = req.Forks
	}
	durations := []struct {
		name string
		s    string
		dst  *time.Duration
	}{{"timeout", req.Timeout, &spec.Timeout}, {"connect_timeout", req.ConnectTimeout, &spec.ConnectTimeout}, {"batch_wait", req.BatchWait, &spec.Batch.Wait}}
	for _, d := range durations {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return r, usageError("%s: %v", d.name, err)
		}
		*d.dst = v
	}
	r.timeoutSet = req.Timeout != ""
	if req.Batch != "" {
		if err := (&countFlag{dst: &spec.Batch.Size, min: 1}).Set(req.Batch); err != nil {
			return r, usageError("batch: %v", err)
		}
	}
	if req.MaxFail != "" {
		if err := (&maxFailFlag{dst: &spec.Batch.MaxFail}).Set(req.MaxFail); err != nil {
			return r, usageError("max_fail: %v", err)
		}
	}
	if err := spec.Batch.Check(); err != nil {
		return r, usageError("%v", err)
	}
	r.spec, r.async, r.queue = spec, req.Async, req.Queue
	if r.queue && !r.async {
		return r, usageError("queue needs async: only an async job waits for minions to come back")
	}
	return r, nil
}
