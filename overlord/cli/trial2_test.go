package cli_test

import (
	"strings"
	"testing"
)

// What a second newcomer's trial (after issue 9) found in --help: each
// command's help says what the command does.
func TestHelpSaysWhatItDoes(t *testing.T) {
	h := newHarness(t)
	for _, tt := range []struct {
		cmd  []string
		want []string
	}{
		// The target syntax: ranges and earlier jobs are targets too.
		{[]string{"call", "--help"}, []string{"web[1-10]", "failed:JOB", "ok:JOB", "'overlord minion list TARGET'"}},
		// script waits as call does: --timeout is no kill switch, exit 4.
		{[]string{"script", "--help"}, []string{"not a limit on\nthe script", "4 minions still running when the wait ended",
			"how long to wait for the minions (those still running go on, exit 4)"}},
	} {
		out := h.must(tt.cmd...)
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("overlord %s does not say %q:\n%s", strings.Join(tt.cmd, " "), w, out)
			}
		}
	}
}
