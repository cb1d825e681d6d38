package modules_test

import (
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/command"
	"github.com/overlordhq/overlord/modules/test"
)

func method(t *testing.T, m modules.Module, name string) *modules.Method {
	t.Helper()
	for _, meth := range m.Methods() {
		if meth.Name == name {
			return meth
		}
	}
	t.Fatalf("module %s has no method %s", m.Name(), name)
	return nil
}

func TestParseCommandLine(t *testing.T) {
	run := method(t, command.Module{}, "run")
	echo := method(t, test.Module{}, "echo")
	add := method(t, test.Module{}, "add")
	sleep := method(t, test.Module{}, "sleep")
	typed := &modules.Method{Name: "typed", Params: []modules.Param{
		{Name: "n", Type: modules.Int},
		{Name: "on", Type: modules.Bool},
		{Name: "tags", Type: modules.List},
		{Name: "opts", Type: modules.Object},
		{Name: "wait", Type: modules.Duration},
	}}

	tests := []struct {
		name       string
		m          *modules.Method
		words      []string
		named      map[string]any
		positional []any
		err        string // the error, if any
	}{
		{name: "no words", m: run},
		{name: "command line", m: run, words: []string{"make -C /srv deploy"},
			positional: []any{"make -C /srv deploy"}},
		{name: "env assignment stays positional", m: run, words: []string{"FOO=1 make"},
			positional: []any{"FOO=1 make"}},
		{name: "string param keeps number text", m: run, words: []string{"42"},
			positional: []any{"42"}},
		{name: "string param keeps true", m: run, words: []string{"true"},
			positional: []any{"true"}},
		{name: "string param keeps JSON string quotes", m: run, words: []string{`"ls"`},
			positional: []any{`"ls"`}},
		{name: "string|list takes a list", m: run, words: []string{`["ls", "-l"]`},
			positional: []any{[]any{"ls", "-l"}}},
		{name: "string|list keeps a broken list as text", m: run, words: []string{`["ls"`},
			positional: []any{`["ls"`}},
		{name: "string|list keeps an object as text", m: run, words: []string{`{"a":1}`},
			positional: []any{`{"a":1}`}},
		{name: "declared key=value is named", m: run, words: []string{"cmd=uptime", "cwd=/tmp"},
			named: map[string]any{"cmd": "uptime", "cwd": "/tmp"}},
		{name: "named value keeps =", m: run, words: []string{"echo", "stdin=a=b"},
			named: map[string]any{"stdin": "a=b"}, positional: []any{"echo"}},
		{name: "named empty value", m: run, words: []string{"cat", "stdin="},
			named: map[string]any{"stdin": ""}, positional: []any{"cat"}},
		{name: "duration as text", m: run, words: []string{"sleep 1", "timeout=1m30s"},
			named: map[string]any{"timeout": "1m30s"}, positional: []any{"sleep 1"}},
		{name: "duration as seconds", m: run, words: []string{"sleep 1", "timeout=90"},
			named: map[string]any{"timeout": 90.0}, positional: []any{"sleep 1"}},
		{name: "object", m: run, words: []string{"env", `env={"A":"1"}`},
			named: map[string]any{"env": map[string]any{"A": "1"}}, positional: []any{"env"}},
		{name: "any takes JSON", m: echo, words: []string{`{"a":[1,2]}`},
			positional: []any{map[string]any{"a": []any{1.0, 2.0}}}},
		{name: "any takes number", m: echo, words: []string{"42"}, positional: []any{42.0}},
		{name: "any takes JSON string unquoted", m: echo, words: []string{`"hi"`}, positional: []any{"hi"}},
		{name: "any falls back to text", m: echo, words: []string{"hello world"}, positional: []any{"hello world"}},
		{name: "any named", m: echo, words: []string{"message=null"}, named: map[string]any{"message": nil}},
		{name: "floats", m: add, words: []string{"1", "2.5"}, positional: []any{1.0, 2.5}},
		{name: "float named", m: add, words: []string{"b=2", "a=-1"}, named: map[string]any{"a": -1.0, "b": 2.0}},
		{name: "float bad stays text for Bind to reject", m: sleep, words: []string{"soon"}, positional: []any{"soon"}},
		{name: "int", m: typed, words: []string{"3"}, positional: []any{3.0}},
		{name: "int 2.5 left for Bind", m: typed, words: []string{"2.5"}, positional: []any{2.5}},
		{name: "bool", m: typed, words: []string{"n=1", "on=false"}, named: map[string]any{"n": 1.0, "on": false}},
		{name: "bool word stays text", m: typed, words: []string{"on=yes"}, named: map[string]any{"on": "yes"}},
		{name: "list", m: typed, words: []string{`tags=["a"]`}, named: map[string]any{"tags": []any{"a"}}},
		{name: "object", m: typed, words: []string{`opts={}`}, named: map[string]any{"opts": map[string]any{}}},
		{name: "duration number", m: typed, words: []string{"wait=2.5"}, named: map[string]any{"wait": 2.5}},
		{name: "key must look like a name", m: typed, words: []string{"1n=3", "n x=3"}, positional: []any{"1n=3", "n x=3"}},

		// A method only the minions know: every value JSON if it parses,
		// key=value named if the key looks like a name.
		{name: "unknown method", m: nil, words: []string{"42", "x", `["a"]`, "k=v", "n=1", "=v"},
			named:      map[string]any{"k": "v", "n": 1.0},
			positional: []any{42.0, "x", []any{"a"}, "=v"}},
		{name: "unknown method after --", m: nil, words: []string{"k=v", "--", "n=1", "-x", "2"},
			named:      map[string]any{"k": "v"},
			positional: []any{"n=1", "-x", 2.0}},
		{name: "unknown method named twice", m: nil, words: []string{"k=1", "k=2"}, err: "x.y parameter k given twice"},

		// No word lands in a parameter the user did not mean.
		{name: "unknown key", m: run, words: []string{"id", "runas=nobody"},
			err: "x.y has no parameter runas; it has: cmd, cwd, env, stdin, timeout, max_output"},
		{name: "env assignment alone is an unknown key", m: run, words: []string{"FOO=1"},
			err: "x.y has no parameter FOO; it has: cmd"},
		{name: "unknown key of a method of any", m: echo, words: []string{"a=b"}, err: "x.y has no parameter a; it has: message"},
		{name: "command takes one word", m: run, words: []string{"echo", "hello"},
			err: "x.y takes the command as one word: quote it ('echo hello') or put it after -- (x.y -- echo hello)"},
		{name: "second word is not cwd", m: run, words: []string{"pwd", "/tmp"}, err: "takes the command as one word: quote it ('pwd /tmp')"},
		{name: "a quote in a word: only --", m: run, words: []string{"echo", "it's"}, err: `x.y takes the command as one word: put the words after -- (x.y -- echo 'it'\''s')`},
		{name: "a space in a word: only --, quoted as typed", m: run, words: []string{"grep", "a b", "/etc/motd"},
			err: `x.y takes the command as one word: put the words after -- (x.y -- grep 'a b' /etc/motd)`},
		{name: "numbers: key=value for the others", m: add, words: []string{"1", "2", "3"},
			err: "x.y takes 2 plain word(s) (a, b), got 3: give the others as key=value (it has: a, b)"},
		{name: "named twice", m: run, words: []string{"cmd=a", "cmd=b"}, err: "x.y parameter cmd given twice"},
		{name: "no plain words", m: &modules.Method{Name: "n", Positional: modules.NoPositional, Params: []modules.Param{{Name: "a", Type: modules.String}}},
			words: []string{"x"}, err: "x.y takes no plain words, only key=value (it has: a); got x"},

		// After --, words are plain words; the command takes them all.
		{name: "dash joins the command", m: run, words: []string{"--", "df", "-h", "/"}, positional: []any{"df -h /"}},
		{name: "dash quotes as typed", m: run, words: []string{"--", "echo", "$HOME", "a b", "it's", ""},
			positional: []any{`echo '$HOME' 'a b' 'it'\''s' ''`}},
		{name: "dash one word as is", m: run, words: []string{"--", "df -h /"}, positional: []any{"df -h /"}},
		{name: "dash keeps key=value words", m: run, words: []string{"timeout=5s", "--", "FOO=1", "make", "runas=x"},
			named: map[string]any{"timeout": "5s"}, positional: []any{"FOO=1 make runas=x"}},
		{name: "dash after the command", m: run, words: []string{"ls", "--", "-la"},
			err: "takes the command as one word: quote it ('ls -la')"},
		{name: "dash with nothing after", m: run, words: []string{"--"}, err: "x.y has nothing after --"},
		{name: "dash fills numbers one each", m: add, words: []string{"--", "-1", "-2.5"}, positional: []any{-1.0, -2.5}},
		{name: "dash too many numbers", m: add, words: []string{"--", "1", "2", "3"}, err: "x.y takes 2 plain word(s)"},
		{name: "dash fills the last string param", m: &modules.Method{Name: "w", Positional: 2, Params: []modules.Param{
			{Name: "path", Type: modules.String}, {Name: "content", Type: modules.String}, {Name: "mode", Type: modules.String}}},
			words: []string{"--", "/etc/motd", "hello", "world"}, positional: []any{"/etc/motd", "hello world"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			named, positional, err := modules.ParseCommandLine("x.y", tt.m, tt.words)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(named) != 0 || len(tt.named) != 0 {
				if !reflect.DeepEqual(named, tt.named) {
					t.Errorf("named = %#v, want %#v", named, tt.named)
				}
			}
			if len(positional) != 0 || len(tt.positional) != 0 {
				if !reflect.DeepEqual(positional, tt.positional) {
					t.Errorf("positional = %#v, want %#v", positional, tt.positional)
				}
			}
		})
	}
}

// A command line parsed for a built-in method binds without surprises.
func TestParseCommandLineThenBind(t *testing.T) {
	run := method(t, command.Module{}, "run")
	tests := []struct {
		words []string
		want  modules.Args
	}{
		{[]string{"FOO=1 make"}, modules.Args{"cmd": "FOO=1 make", "max_output": command.DefaultMaxOutput}},
		{[]string{"42"}, modules.Args{"cmd": "42", "max_output": command.DefaultMaxOutput}},
		{[]string{`["ls","-l"]`, "cwd=/tmp", "timeout=10s"},
			modules.Args{"cmd": []any{"ls", "-l"}, "cwd": "/tmp", "timeout": "10s", "max_output": command.DefaultMaxOutput}},
		{[]string{"--", "df", "-h", "/"}, modules.Args{"cmd": "df -h /", "max_output": command.DefaultMaxOutput}},
	}
	for _, tt := range tests {
		t.Run(tt.words[0], func(t *testing.T) {
			named, positional, err := modules.ParseCommandLine("command.run", run, tt.words)
			if err != nil {
				t.Fatal(err)
			}
			args, err := run.Bind(named, positional)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(args, tt.want) {
				t.Errorf("args = %#v, want %#v", args, tt.want)
			}
		})
	}
}

func FuzzParseCommandLine(f *testing.F) {
	run := (command.Module{}).Methods()[0]
	for _, s := range []string{"FOO=1 make", "42", `["ls"]`, "cmd=x", "timeout=90", `env={"A":1}`, "=", "", "--", "runas=x"} {
		f.Add(s, "x")
	}
	f.Fuzz(func(t *testing.T, word, word2 string) {
		for _, m := range []*modules.Method{run, nil} {
			named, positional, err := modules.ParseCommandLine("command.run", m, []string{word})
			if err == nil && word != modules.Dash && len(named)+len(positional) != 1 {
				t.Fatalf("word %q became %d named and %d positional values", word, len(named), len(positional))
			}
			_, _ = run.Bind(named, positional) // must not panic
			named, positional, err = modules.ParseCommandLine("command.run", m, []string{modules.Dash, word, word2})
			if err != nil || len(named) != 0 {
				t.Fatalf("after --, %q %q: named %v, error %v", word, word2, named, err)
			}
			if m == run && positional[0] != modules.ShellQuote(word)+" "+modules.ShellQuote(word2) {
				t.Fatalf("after --, %q %q became %#v", word, word2, positional)
			}
		}
	})
}

// ShellQuote's output is what a POSIX shell reads back as the word.
func TestShellQuote(t *testing.T) {
	words := []string{"", "plain", "a b", "it's", `"`, "$HOME", "*", "~", "a\nb", "tab\there", "FOO=1", "-la", "é", "'", "''", "\\", "!x", "a\n"}
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = modules.ShellQuote(w)
	}
	for _, w := range []string{"plain", "FOO=1", "-la", "/usr/bin:x,y@z%+."} {
		if q := modules.ShellQuote(w); q != w {
			t.Errorf("ShellQuote(%q) = %q, want it as it is", w, q)
		}
	}
	out, err := exec.Command("/bin/sh", "-c", `for w in `+strings.Join(quoted, " ")+`; do printf '%s\0' "$w"; done`).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if !reflect.DeepEqual(got, words) {
		t.Errorf("the shell read back %q, want %q", got, words)
	}
}
