// Command minion is the minion daemon. See docs/cli.md.
package main

import (
	"context"
	"os"

	"github.com/overlordhq/overlord/minion/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
