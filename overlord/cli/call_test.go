package cli_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/jobs/jobstest"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/target"
)

func TestCallExitCodes(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addMinion("web1")
	h.addDeadMinion("web2")
	h.must("group", "add", "all", "web1", "web2")

	tests := []struct {
		name    string
		args    []string
		code    int
		msg     string // in the error
		wantErr error  // errors.Is, if set
	}{
		// 0 and 1
		{name: "ok", args: []string{"call", "web1", "test.ping"}, code: 0},
		{name: "one failed", args: []string{"call", "@all", "test.ping"}, code: 1},
		{name: "method failed", args: []string{"call", "web1", "test.fail"}, code: 1},
		{name: "unknown module on the minion", args: []string{"call", "web1", "pkg.install", "nginx"}, code: 1},
		// 2: usage
		{name: "no dot", args: []string{"call", "web1", "ping"}, code: 2, msg: `want MODULE.METHOD, got "ping"`},
		{name: "no module", args: []string{"call", "web1", ".ping"}, code: 2, msg: "want MODULE.METHOD"},
		{name: "no method", args: []string{"call", "web1", "test."}, code: 2, msg: "want MODULE.METHOD"},
		{name: "forks 0", args: []string{"call", "web1", "test.ping", "--forks", "0"}, code: 2, msg: "--forks must be at least 1, got 0"},
		{name: "forks negative", args: []string{"call", "web1", "test.ping", "--forks=-3"}, code: 2, msg: "--forks must be at least 1"},
		{name: "forks not a number", args: []string{"call", "web1", "test.ping", "--forks", "many"}, code: 2, msg: "invalid argument"},
		{name: "timeout 0", args: []string{"call", "web1", "test.ping", "--timeout", "0s"}, code: 2, msg: "--timeout must be positive"},
		{name: "timeout without unit", args: []string{"call", "web1", "test.ping", "--timeout", "5"}, code: 2, msg: "invalid argument"},
		{name: "unknown output", args: []string{"call", "web1", "test.ping", "-o", "xml"}, code: 2,
			msg: `unknown output format "xml" (want text, json, ndjson, yaml)`},
		{name: "too few args", args: []string{"call", "web1"}, code: 2, msg: "requires at least 2 arg"},
		{name: "bad args of a built-in", args: []string{"call", "web1", "test.add", "1"}, code: 2, msg: "test.add: missing required parameter b (float)"},
		{name: "int 2.5", args: []string{"call", "web1", "command.run", "true", "max_output=2.5"}, code: 2, msg: "parameter max_output: want int, got number 2.5"},
		{name: "more words than the method takes", args: []string{"call", "web1", "command.run", "echo", "hello"}, code: 2,
			msg: "command.run takes the command as one word: quote it ('echo hello') or put it after -- (command.run -- echo hello)"},
		{name: "unknown key", args: []string{"call", "web1", "command.run", "id", "runas=nobody"}, code: 2,
			msg: "command.run has no parameter runas; it has: cmd, cwd, env, stdin, timeout, max_output"},
		{name: "-h after the method", args: []string{"call", "web1", "command.run", "df", "-h"}, code: 2,
			msg: "-h after command.run is a word for command.run, not a request for help: put the words it goes with after -- (overlord call web1 command.run -- df -h) or quote them as one word ('df -h')"},
		{name: "--help after the method", args: []string{"call", "web1", "command.run", "--help"}, code: 2, msg: "not a request for help"},
		{name: "unknown flag after the method", args: []string{"call", "web1", "command.run", "ls", "-la", "/tmp"}, code: 2,
			msg: "-la after command.run is not a flag of 'overlord call': put the words it goes with after -- (overlord call web1 command.run -- ls -la) or quote them as one word ('ls -la')"},
		{name: "a flag after a word with a space", args: []string{"call", "web1", "command.run", "grep", "a b", "/etc", "-r"}, code: 2,
			msg: "-r after command.run is not a flag of 'overlord call': put the words it goes with after -- (overlord call web1 command.run -- grep 'a b' /etc -r)"},
		{name: "unknown long flag after the method", args: []string{"call", "web1", "command.run", "ls", "--color=auto"}, code: 2,
			msg: "--color after command.run is not a flag of 'overlord call'"},
		{name: "unknown flag before the method", args: []string{"call", "web1", "-la", "command.run", "ls"}, code: 2, msg: "unknown shorthand flag: 'l' in -la"},
		{name: "-n among the words", args: []string{"call", "web1", "command.run", "echo", "-n", "hi"}, code: 2,
			msg: "-n after command.run would be the overlord's --no-stdin, not a word for command.run: put the words it goes with after -- (overlord call web1 command.run -- echo -n hi)"},
		{name: "nothing after --", args: []string{"call", "web1", "command.run", "--"}, code: 2, msg: "command.run has nothing after --"},
		{name: "negative number", args: []string{"call", "web1", "test.add", "-1", "2"}, code: 2, msg: "-1 after test.add is not a flag"},
		{name: "unknown group", args: []string{"call", "@db", "test.ping"}, code: 2, wantErr: target.ErrUnknownGroup},
		{name: "bad glob", args: []string{"call", "web[", "test.ping"}, code: 2, msg: "bad glob"},
		{name: "empty target", args: []string{"call", "", "test.ping"}, code: 2, msg: "empty target"},
		// 3: no match
		{name: "no match", args: []string{"call", "db*", "test.ping"}, code: 3, wantErr: overlord.ErrNoMatch},
		{name: "all excluded", args: []string{"call", "*,!web*", "test.ping"}, code: 3, wantErr: overlord.ErrNoMatch},
		{name: "no match beats bad args", args: []string{"call", "db*", "test.add"}, code: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.run(tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d (error %v)\n%s", r.code, tt.code, r.err, r.stdout)
			}
			if tt.msg != "" && (r.err == nil || !strings.Contains(r.err.Error(), tt.msg)) {
				t.Errorf("error %v, want one saying %q", r.err, tt.msg)
			}
			if tt.wantErr != nil && !errors.Is(r.err, tt.wantErr) {
				t.Errorf("error %v, want %v", r.err, tt.wantErr)
			}
			if tt.code >= 2 && r.stdout != "" {
				t.Errorf("stdout on a usage error: %q", r.stdout)
			}
		})
	}

	// Usage errors and no-match record no job.
	recs, err := jobs.New(filepath.Join(h.dir, overlord.DBFile), 0).ListJobs(jobs.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 {
		t.Errorf("%d jobs recorded, want 4 (the calls that ran)", len(recs))
	}
}

func TestJobListUsage(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	for _, args := range [][]string{
		{"job", "list", "--state", "DONE"},
		{"job", "list", "--limit", "-1"},
		{"job", "list", "-o", "csv"},
		{"job", "status"},
	} {
		if r := h.run(args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2", args, r.code)
		}
	}
}

// While another process holds overlord.db, commands give up after
// --lock-timeout with a clear error and a hint.
func TestLockTimeoutFlag(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	jobstest.Hold(t, filepath.Join(h.dir, overlord.DBFile))
	r := h.run("--lock-timeout", "100ms", "minion", "list")
	if r.code != 2 || !errors.Is(r.err, jobs.ErrLocked) {
		t.Errorf("exit %d, error %v; want 2 with ErrLocked", r.code, r.err)
	}
}

// Commands before `ca init` say what to do.
func TestNoStateYet(t *testing.T) {
	h := newHarness(t)
	for _, args := range [][]string{
		{"minion", "list"},
		{"group", "list"},
		{"job", "list"},
		{"call", "*", "test.ping"},
		{"minion", "add", "web1", "--addr", "h:1", "--bundle-out", filepath.Join(h.out, "w.pem")},
	} {
		r := h.run(args...)
		if r.code != 2 || r.err == nil || !strings.Contains(r.err.Error(), "overlord ca init") {
			t.Errorf("%v: exit %d, error %v; want 2 pointing at 'overlord ca init'", args, r.code, r.err)
		}
	}
}

// ndjson consumers join result lines to their job: `job status -o ndjson`
// puts job_id on every result line, and so should `call -o ndjson`.
func TestCallNDJSONJobID(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addMinion("web1")
	out := h.must("call", "web1", "test.ping", "-o", "ndjson")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("ndjson output:\n%s", out)
	}
	var res, sum map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &res); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &sum); err != nil {
		t.Fatal(err)
	}
	if sum["type"] != "summary" || sum["job_id"] == nil {
		t.Fatalf("summary line %s", lines[1])
	}
	if res["job_id"] != sum["job_id"] {
		t.Errorf("`overlord call -o ndjson` result line %s does not carry the summary's job_id %v "+
			"(`job status -o ndjson` result lines do)", lines[0], sum["job_id"])
	}
}

func TestIdentityFlag(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addMinion("web1")
	ci := filepath.Join(h.out, "ci.pem")
	h.must("ca", "client", "ci-bot", "--bundle-out", ci)

	if r := h.run("--identity", ci, "call", "web1", "test.ping"); r.code != 0 {
		t.Errorf("--identity: exit %d %v", r.code, r.err)
	}
	h.env["OVERLORD_IDENTITY"] = ci
	if r := h.run("call", "web1", "test.ping"); r.code != 0 {
		t.Errorf("OVERLORD_IDENTITY: exit %d %v", r.code, r.err)
	}
	delete(h.env, "OVERLORD_IDENTITY")

	// An identity of another CA reaches the minion and is refused: a
	// per-minion tls failure, exit 1.
	other := newHarness(t)
	other.must("ca", "init", "--name", "op")
	foreign := filepath.Join(other.out, "foreign.pem")
	other.must("ca", "client", "intruder", "--bundle-out", foreign)
	r := h.run("--identity", foreign, "call", "web1", "test.ping", "-o", "json")
	if r.code != 1 || !strings.Contains(r.stdout, `"kind": "tls"`) {
		t.Errorf("foreign identity: exit %d\n%s", r.code, r.stdout)
	}

	// A readable identity file is refused before anything is sent.
	if err := os.Chmod(ci, 0o644); err != nil {
		t.Fatal(err)
	}
	r = h.run("--identity", ci, "call", "web1", "test.ping")
	if r.code != 2 || r.err == nil || !strings.Contains(r.err.Error(), "0600") {
		t.Errorf("0644 identity: exit %d %v", r.code, r.err)
	}
	// So is the state directory's own key once others can read it.
	if err := os.Chmod(filepath.Join(h.dir, overlord.KeyFile), 0o640); err != nil {
		t.Fatal(err)
	}
	r = h.run("call", "web1", "test.ping")
	if r.code != 2 || r.err == nil || !strings.Contains(r.err.Error(), "0600") {
		t.Errorf("0640 overlord.key: exit %d %v", r.code, r.err)
	}
}

// Words after MODULE.METHOD reach the method as the user meant them, and
// the overlord's own flags still work anywhere.
func TestCallWords(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addMinion("web1")
	h.addMinion("web2")

	stdout := func(out string) []string {
		var doc struct {
			Minions map[string]struct {
				OK     bool `json:"ok"`
				Result struct {
					Stdout string `json:"stdout"`
				} `json:"result"`
			} `json:"minions"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var got []string
		for _, n := range []string{"web1", "web2"} {
			if m, ok := doc.Minions[n]; ok {
				got = append(got, m.Result.Stdout)
			}
		}
		return got
	}
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  []string // each minion's stdout
	}{
		{name: "after --", args: []string{"call", "web1", "command.run", "-o", "json", "--", "printf", "%s|", "a b", "$HOME", "-h"},
			want: []string{"a b|$HOME|-h|"}},
		{name: "one quoted word", args: []string{"call", "web1", "command.run", "printf '%s|' a b", "-o", "json"}, want: []string{"a|b|"}},
		{name: "env assignment in the command", args: []string{"call", "web1", "command.run", "FOO=1; echo $FOO", "-o", "json"}, want: []string{"1\n"}},
		{name: "flags anywhere", args: []string{"call", "--timeout", "5s", "web1", "command.run", "--forks=2", "echo hi", "-o", "json"}, want: []string{"hi\n"}},
		{name: "stdin piped to every minion", stdin: "a\n", args: []string{"call", "web*", "command.run", "cat", "-o", "json"}, want: []string{"a\n", "a\n"}},
		{name: "stdin= given wins", stdin: "a\n", args: []string{"call", "web1", "command.run", "cat", "stdin=b", "-o", "json"}, want: []string{"b"}},
		{name: "-n sends none", stdin: "a\n", args: []string{"call", "web1", "command.run", "cat", "-n", "-o", "json"}, want: []string{""}},
		{name: "--no-stdin sends none", stdin: "a\n", args: []string{"call", "web1", "--no-stdin", "command.run", "cat", "-o", "json"}, want: []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.stdin = tt.stdin
			defer func() { h.stdin = "" }()
			out := h.must(tt.args...)
			if got := stdout(out); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("stdout %q, want %q", got, tt.want)
			}
		})
	}

	// Help is help before MODULE.METHOD, and nothing is run.
	for _, args := range [][]string{{"call", "-h"}, {"call", "--help"}, {"call", "web1", "-h"}, {"script", "-h"}} {
		r := h.run(args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") || !strings.Contains(r.stdout, "-n, --no-stdin") {
			t.Errorf("%v: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}

	// Standard input is bounded, and text.
	h.stdin = strings.Repeat("x", overlord.MaxStdin+1)
	if r := h.run("call", "web1", "command.run", "cat"); r.code != 2 || r.err == nil || !strings.Contains(r.err.Error(), "standard input is more than 4194304 bytes") {
		t.Errorf("5 MiB of stdin: exit %d, %v", r.code, r.err)
	}
	h.stdin = "\xff\xfe"
	if r := h.run("call", "web1", "command.run", "cat"); r.code != 2 || r.err == nil || !strings.Contains(r.err.Error(), "not UTF-8") {
		t.Errorf("binary stdin: exit %d, %v", r.code, r.err)
	}
	// A method without a stdin parameter does not read it.
	if r := h.run("call", "web1", "test.ping"); r.code != 0 {
		t.Errorf("test.ping with stdin: exit %d, %v", r.code, r.err)
	}
	h.stdin = ""
}

func TestScript(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addMinion("web1")
	write := func(name, content string) string {
		p := filepath.Join(h.out, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sh := write("ok.sh", "#!/bin/sh\nprintf '%s|' \"$#\" \"$@\"\ncat\n")
	h.stdin = "in"
	out := h.must("script", "web1", sh, "a b", "-o", "json", "--", "-x", "--", "y=1")
	h.stdin = ""
	if !strings.Contains(out, `"stdout": "4|a b|-x|--|y=1|in"`) {
		t.Errorf("script output:\n%s", out)
	}
	if r := h.run("script", "web1", write("fail.sh", "#!/bin/sh\necho no >&2; exit 3\n")); r.code != 1 {
		t.Errorf("failing script: exit %d", r.code)
	}
	for _, tt := range []struct {
		name string
		args []string
		msg  string
	}{
		{"no #!", []string{"script", "web1", write("plain.sh", "echo hi\n")}, "has no #! line"},
		{"CRLF", []string{"script", "web1", write("crlf.sh", "#!/bin/sh\r\necho hi\r\n")}, "carriage return"},
		{"too big", []string{"script", "web1", write("big.sh", "#!/bin/sh\n"+strings.Repeat("#", 1<<20))}, "more than 1048576 bytes"},
		{"missing", []string{"script", "web1", filepath.Join(h.out, "nope.sh")}, "no such file"},
		{"flag-like argument", []string{"script", "web1", sh, "--force"}, "--force after " + sh + " is not a flag of 'overlord script': put the script's arguments after --"},
		{"-h argument", []string{"script", "web1", sh, "-h"}, "is a word for"},
		{"flag-like argument after one with a space", []string{"script", "web1", sh, "a b", "-x"}, "(overlord script web1 " + modules.ShellQuote(sh) + " -- 'a b' -x)"},
	} {
		r := h.run(tt.args...)
		if r.code != 2 || r.err == nil || !strings.Contains(r.err.Error(), tt.msg) {
			t.Errorf("%s: exit %d, %v; want 2 saying %q", tt.name, r.code, r.err, tt.msg)
		}
	}
}

// TestCallWaitTooLong: a --timeout, --connect-timeout or --batch-wait past
// the longest a minion keeps a job is a usage error before anything is
// recorded (2562047h overflowed the deadlines computed from it).
func TestCallWaitTooLong(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addMinion("web1")
	for _, flags := range [][]string{{"--timeout", "2562047h"}, {"--connect-timeout", "169h"}, {"--batch", "1", "--batch-wait", "200h"}, {"--async", "--timeout", "8760h"}} {
		r := h.run(append([]string{"call", "web1", "test.ping"}, flags...)...)
		if r.code != 2 || r.err == nil || !strings.Contains(r.err.Error(), "the longest a minion keeps a job") {
			t.Errorf("%v: exit %d, %v", flags, r.code, r.err)
		}
	}
	if r := h.run("job", "list", "-o", "json"); strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("jobs were recorded: %s", r.stdout)
	}
}
