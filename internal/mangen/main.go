// Command mangen writes the man pages of both binaries, one per command,
// from their cobra commands: `go run ./internal/mangen DIR` (make man).
package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"

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
		escapeMarkdown(root, map[*pflag.Flag]bool{})
		header := &doc.GenManHeader{Section: "1", Source: "overlord", Manual: "overlord manual"}
		if err := doc.GenManTree(root, header, dir); err != nil {
			return fmt.Errorf("%s: %w", root.Name(), err)
		}
	}
	return nil
}

// markdown is what cobra/doc's Markdown-to-roff step would read as
// Markdown in a help text: 'web*,!web3' would lose its star to emphasis
// (*...* across two globs) and "web[1-3,7] (4)" become a link.
var markdown = strings.NewReplacer(`\`, `\\`, "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`)

// escapeText escapes the Markdown of text, except in lines indented by a
// tab or four spaces: Markdown's code blocks (cobra's completion help),
// printed as they are.
func escapeText(text string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "\t") && !strings.HasPrefix(l, "    ") {
			lines[i] = markdown.Replace(l)
		}
	}
	return strings.Join(lines, "\n")
}

// escapeMarkdown makes the long help and flag usages of cmd and its
// subcommands print as they do in --help. A flag shared by commands
// (persistent) is escaped once: seen.
func escapeMarkdown(cmd *cobra.Command, seen map[*pflag.Flag]bool) {
	cmd.Long = escapeText(cmd.Long)
	escape := func(f *pflag.Flag) {
		if !seen[f] {
			seen[f] = true
			f.Usage = markdown.Replace(f.Usage)
		}
	}
	cmd.Flags().VisitAll(escape)
	cmd.PersistentFlags().VisitAll(escape)
	for _, c := range cmd.Commands() {
		escapeMarkdown(c, seen)
	}
}
