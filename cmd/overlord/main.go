// Command overlord runs commands across a fleet of minions. See docs/cli.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/overlordhq/overlord/overlord/cli"
)

func main() {
	// A reader that goes away (overlord call -o ndjson | head -n 1) must
	// not kill a call half-way through recording its job: writes then
	// fail with EPIPE instead, and the call runs to its end.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, a second one ends the process at once.
		<-ctx.Done()
		stop()
	}()
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
