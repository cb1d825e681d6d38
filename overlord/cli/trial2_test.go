package cli_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/overlord/cli"
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
		// exit 4 is any job not FINISHED, with or without --wait.
		{[]string{"job", "status", "--help"}, []string{"4 the job is not\nFINISHED (still running, or --wait gave up"}},
	} {
		out := h.must(tt.cmd...)
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("overlord %s does not say %q:\n%s", strings.Join(tt.cmd, " "), w, out)
			}
		}
	}
}

// A target that matches nothing says what to try once, on its Try line,
// and a failed:/ok: term that is the whole target is quoted once.
func TestTargetErrorsSayItOnce(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addMinion("m1")
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"call", "nothing", "test.ping"}, 3, "Error: target matched no minion: \"nothing\" (1 registered)\nTry: overlord minion list\n"},
		{[]string{"minion", "list", "failed:zz"}, 2, "Error: target \"failed:zz\": want failed:JOBID with a job ID or its prefix, as 'overlord job list' shows them\n"},
	} {
		var stdout, stderr bytes.Buffer
		code := cli.Main(context.Background(), append([]string{"--state-dir", h.dir}, tt.args...), strings.NewReader(""), &stdout, &stderr)
		if code != tt.code || stderr.String() != tt.want {
			t.Errorf("overlord %s: exit %d, stderr:\n%s\nwant exit %d and:\n%s", strings.Join(tt.args, " "), code, stderr.String(), tt.code, tt.want)
		}
	}
}

// Too few or too many arguments: the error says which the command takes,
// not only how many (cobra's "accepts 2 arg(s), received 1").
func TestArgCountSaysUsage(t *testing.T) {
	h := newHarness(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"call", "web1"}, "Error: overlord call TARGET MODULE.METHOD [ARG...] [-- WORD...]: requires at least 2 arg(s), only received 1\nTry: overlord call --help\n"},
		{[]string{"fetch", "web1:/etc/motd"}, "Error: overlord fetch TARGET:PATH LOCALDIR: accepts 2 arg(s), received 1\nTry: overlord fetch --help\n"},
		{[]string{"minion", "list", "a", "b"}, "Error: overlord minion list [TARGET]: accepts at most 1 arg(s), received 2\nTry: overlord minion list --help\n"},
	} {
		var stdout, stderr bytes.Buffer
		code := cli.Main(context.Background(), append([]string{"--state-dir", h.dir}, tt.args...), strings.NewReader(""), &stdout, &stderr)
		if code != 2 || stderr.String() != tt.want {
			t.Errorf("overlord %s: exit %d, stderr:\n%s\nwant exit 2 and:\n%s", strings.Join(tt.args, " "), code, stderr.String(), tt.want)
		}
	}
}

// A name in a target list that no minion has (a typo) is left out with a
// note, not silently; the rest of the target still runs.
func TestUnknownNameInTargetIsNoted(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addMinion("web1")
	h.addMinion("web2")
	h.must("group", "add", "db", "web2")
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"minion", "list", "web1,wbe2", "-o", "json"}, 0, "note: no minion is named wbe2: left out of the target; did you mean web2?\n"},
		{[]string{"call", "web1,db,zzz,!nope", "test.ping"}, 0,
			"note: no minion is named db: left out of the target; db is a group: did you mean @db?\nnote: no minion is named zzz: left out of the target\n"},
		{[]string{"call", "web*,web1", "test.ping"}, 0, ""},
	} {
		var stdout, stderr bytes.Buffer
		code := cli.Main(context.Background(), append([]string{"--state-dir", h.dir}, tt.args...), strings.NewReader(""), &stdout, &stderr)
		if code != tt.code || stderr.String() != tt.want || !strings.Contains(stdout.String(), "web1") {
			t.Errorf("overlord %s: exit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d, web1 on stdout, and on stderr:\n%s",
				strings.Join(tt.args, " "), code, stdout.String(), stderr.String(), tt.code, tt.want)
		}
	}
}

// overlord modules names the minions that describe the same modules
// folded, as -b does (web[1-3]), not one by one.
func TestModulesFoldsNames(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	for _, n := range []string{"web1", "web2", "web3"} {
		h.addMinion(n)
	}
	out := h.must("modules", "web*")
	if first, _, _ := strings.Cut(out, "\n"); !strings.HasPrefix(first, "web[1-3] (minion ") {
		t.Errorf("modules web* begins %q, want web[1-3] (minion ...)", first)
	}
}
