package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/status"
)

func TestFoldNames(t *testing.T) {
	tests := []struct {
		names []string
		want  string
	}{
		{[]string{"web1"}, "web1"},
		{[]string{"web3", "web1", "web2", "web7"}, "web[1-3,7]"},
		{[]string{"web01", "web02", "web03"}, "web[01-03]"},
		{[]string{"web08", "web09", "web10", "web12"}, "web[08-10,12]"},
		{[]string{"web9", "web10", "web11"}, "web[9-11]"},
		{[]string{"web1", "web01", "web2"}, "web[1-2,01]"},
		{[]string{"web1", "db1", "db2", "web2", "lb"}, "db[1-2],lb,web[1-2]"},
		{[]string{"alpha", "beta"}, "alpha,beta"},
		{[]string{"n1.example.org", "n2.example.org", "n3.example.net"}, "n3.example.net,n[1-2].example.org"},
		{[]string{"rack1-n1", "rack1-n2", "rack2-n1"}, "rack1-n[1-2],rack2-n1"},
		{[]string{"web1", "web1", "web2"}, "web[1-2]"},
		{[]string{"x99999999999999999999999", "x1"}, "x[1,99999999999999999999999]"},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := foldNames(tt.names); got != tt.want {
			t.Errorf("foldNames(%q) = %q, want %q", tt.names, got, tt.want)
		}
	}
}

func cmdResult(ok bool, stdout, stderr string, exit int, ms int64) status.Result {
	raw, _ := json.Marshal(map[string]any{"stdout": stdout, "stderr": stderr, "exit_code": exit, "duration_ms": ms})
	r := status.Result{State: status.Finished, OK: ok, Result: raw, DurationMS: ms}
	if !ok {
		r.Error = &status.Error{Kind: status.KindModuleError, Message: "command exit status 1"}
	}
	return r
}

// --group prints minions with the same output once, under their folded
// names; the duration does not split groups; errors group by kind and
// message.
func TestGroupedText(t *testing.T) {
	var out bytes.Buffer
	p := &jobPrinter{w: &out, format: formatText, groups: &resultGroups{}}
	results := map[string]status.Result{
		"web1": cmdResult(true, "same\nlines\n", "", 0, 3),
		"web2": cmdResult(true, "same\nlines\n", "", 0, 9),
		"web3": cmdResult(true, "same\nlines\n", "", 0, 1),
		"web7": cmdResult(true, "same\nlines\n", "", 0, 1),
		"web4": cmdResult(true, "other\n", "", 0, 1),
		"web5": {State: status.Finished, Error: &status.Error{Kind: status.KindUnreachable, Message: "connection refused"}},
		"db1":  {State: status.Finished, Error: &status.Error{Kind: status.KindUnreachable, Message: "connection refused"}},
		"web6": cmdResult(false, "", "boom\n", 1, 1),
	}
	job := status.Job{JobID: "J", State: status.Finished, Minions: results, Summary: status.Summary{Total: 8, OK: 5, Failed: 3}}
	if err := p.All(job); err != nil {
		t.Fatal(err)
	}
	want := `db1,web5 (2): ERROR unreachable: connection refused
web[1-3,7] (4): exit 0
same
lines
web4 (1): exit 0
other
web6 (1): ERROR module_error: command exit status 1 (exit 1)
web6 stderr:
boom
8 minions: 5 ok, 3 failed (job J, FINISHED)
`
	if out.String() != want {
		t.Errorf("grouped text:\n%s\nwant:\n%s", out.String(), want)
	}
}

// --prefix: every line begins with the minion's name, stderr's with
// NAME stderr:, the truncation note too.
func TestPrefixedText(t *testing.T) {
	var out bytes.Buffer
	p := &jobPrinter{w: &out, format: formatText, prefix: true}
	r := cmdResult(true, "a\nb", "warn\n", 0, 5)
	var c map[string]any
	_ = json.Unmarshal(r.Result, &c)
	c["stdout"], c["truncated"] = strings.Repeat("x\n", 8), true
	r.Result, _ = json.Marshal(c)
	if err := p.Result("web1", cmdResult(true, "a\nb", "warn\n", 0, 5)); err != nil {
		t.Fatal(err)
	}
	if err := p.Result("web2", r); err != nil {
		t.Fatal(err)
	}
	want := `web1: exit 0 (5 ms)
web1: a
web1: b
web1 stderr: warn
web2: exit 0 (5 ms)
` + strings.Repeat("web2: x\n", 8) + `web2 stderr: warn
web2: (stdout truncated at 16 bytes: call again with max_output=4194304 for up to 4 MiB)
`
	if out.String() != want {
		t.Errorf("prefixed text:\n%s\nwant:\n%s", out.String(), want)
	}
}

// The default block: a header line, then the output as the minion wrote
// it, not indented, stderr under NAME stderr:.
func TestBlockText(t *testing.T) {
	var out bytes.Buffer
	p := &jobPrinter{w: &out, format: formatText}
	if err := p.Result("web1", cmdResult(false, "partial\n", "oops\n", 3, 5)); err != nil {
		t.Fatal(err)
	}
	want := "web1: ERROR module_error: command exit status 1 (exit 3)\npartial\nweb1 stderr:\noops\n"
	if out.String() != want {
		t.Errorf("text:\n%q\nwant:\n%q", out.String(), want)
	}
}

func TestTruncationNote(t *testing.T) {
	s := func(n int) *string { v := strings.Repeat("x", n); return &v }
	tests := []struct {
		c    commandResult
		want string
	}{
		{commandResult{Stdout: s(10), Stderr: s(3)}, ""},
		{commandResult{Stdout: s(1 << 20), Stderr: s(3), Truncated: true}, "(stdout truncated at 1 MiB: call again with max_output=4194304 for up to 4 MiB)"},
		{commandResult{Stdout: s(2), Stderr: s(1 << 10), Truncated: true}, "(stderr truncated at 1 KiB: call again with max_output=4194304 for up to 4 MiB)"},
		{commandResult{Stdout: s(4 << 20), Stderr: s(4 << 20), Truncated: true}, "(stdout and stderr truncated at 4 MiB, the most max_output allows: write the output to a file on the minion and fetch it)"},
	}
	for _, tt := range tests {
		if got := tt.c.truncation(); got != tt.want {
			t.Errorf("truncation = %q, want %q", got, tt.want)
		}
	}
}
