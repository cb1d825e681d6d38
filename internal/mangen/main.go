// Command mangen writes the man pages of both binaries, one per command,
// from their cobra commands: `go run ./internal/mangen DIR` (make man).
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	mcli "github.com/overlordhq/overlord/minion/cli"
	ocli "github.com/overlordhq/overlord/overlord/cli"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run ./internal/mangen DIR")
		os.Exit(2)
	}
	if err := Generate(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "mangen:", err)
		os.Exit(1)
	}
}

// Generate writes section 1 pages for every visible command of overlord
// and minion into dir: overlord.1, overlord-call.1, minion-serve.1, ...
func Generate(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	getenv := func(string) string { return "" }
	roots := []*cobra.Command{
		(&ocli.App{Stdin: os.Stdin, Stdout: io.Discard, Stderr: io.Discard, Getenv: getenv}).Root(),
		(&mcli.App{Stdout: io.Discard, Stderr: io.Discard, Getenv: getenv}).Root(),
	}
	for _, root := range roots {
		// cobra adds `completion` when it executes; the pages list it too.
		root.InitDefaultCompletionCmd()
		root.DisableAutoGenTag = true // the same pages from the same source
		header := &doc.GenManHeader{Section: "1", Source: "overlord", Manual: "overlord manual"}
		if err := doc.GenManTree(root, header, dir); err != nil {
			return fmt.Errorf("%s: %w", root.Name(), err)
		}
	}
	return nil
}
