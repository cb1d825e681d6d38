package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The pages say what --help says: a glob's * is not taken for emphasis,
// nor "NAME[...] (...)" for a link, and code blocks stay as they are.
func TestPagesKeepHelpText(t *testing.T) {
	dir := t.TempDir()
	if err := Generate(dir); err != nil {
		t.Fatal(err)
	}
	for page, wants := range map[string][]string{
		"overlord-call.1": {"a glob on minion names (web*)", "exclude ('web*,!web3')", "folded names (web[1-3,7] (4))"},
		"minion-enroll.1": {"HOST[:PORT] (port 51235"},
		// cobra's own help: an indented code block, printed as is.
		"overlord-completion-bash.1": {"/etc/bash_completion.d/overlord"},
	} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Fatal(err)
		}
		roff := string(b)
		for _, w := range wants {
			if !strings.Contains(roff, w) {
				t.Errorf("%s does not say %q", page, w)
			}
		}
		// Emphasis (\fI) or a link (\[la]) comes only from Markdown
		// read in a help text.
		for _, bad := range []string{`\fI`, `\[la]`, `\_`, `\*`} {
			if strings.Contains(roff, bad) {
				t.Errorf("%s has %s: Markdown read in help text", page, bad)
			}
		}
	}
}
