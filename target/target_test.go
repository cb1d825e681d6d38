package target_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/target"
)

var (
	fleet = []string{
		"db1", "db2", "db3", "db4",
		"web1", "web2", "web3",
		"a.example.org", "b.example.org", "example.org",
		"mail.example.com",
	}
	groups = map[string][]string{
		"web":   {"web1", "web2", "web3"},
		"db":    {"db1", "db2"},
		"empty": {},
		"stale": {"web1", "gone"}, // gone was removed from the registry
	}
)

func TestResolve(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		// globs
		{"*", fleet},
		{"web*", []string{"web1", "web2", "web3"}},
		{"web?", []string{"web1", "web2", "web3"}},
		{"web1", []string{"web1"}},
		{"db[1-3]", []string{"db1", "db2", "db3"}},
		{"db[^1-3]", []string{"db4"}},
		{"db[13]", []string{"db1", "db3"}},
		{"*.example.org", []string{"a.example.org", "b.example.org"}},
		{"*example.org", []string{"a.example.org", "b.example.org", "example.org"}},
		{"*.example.*", []string{"a.example.org", "b.example.org", "mail.example.com"}},
		{`db\1`, []string{"db1"}},
		{"nosuch", nil},
		{"nosuch*", nil},
		{"WEB1", nil}, // names are case-sensitive
		// groups
		{"@web", []string{"web1", "web2", "web3"}},
		{"@db,@web", []string{"db1", "db2", "web1", "web2", "web3"}},
		{"@empty", nil},
		{"@stale", []string{"web1"}}, // members no longer registered drop out
		// union
		{"web1,db1", []string{"db1", "web1"}},
		{"web1,web1,web*", []string{"web1", "web2", "web3"}},
		{"@db,db3", []string{"db1", "db2", "db3"}},
		// exclusion, whichever side of the inclusion it is on
		{"web*,!web3", []string{"web1", "web2"}},
		{"!web3,web*", []string{"web1", "web2"}},
		{"@web,!web2", []string{"web1", "web3"}},
		{"web*,!@web", nil},
		{"!@web,web*", nil},
		{"db*,!db[2-3]", []string{"db1", "db4"}},
		{"web1,!web1", nil},
		{"!web1,web1", nil},
		{"web*,!nosuch", []string{"web1", "web2", "web3"}},
		// exclusions only: everything minus them
		{"!web*", []string{"a.example.org", "b.example.org", "db1", "db2", "db3", "db4", "example.org", "mail.example.com"}},
		{"!*.example.*,!@db,!@web", []string{"db3", "db4", "example.org"}},
		{"!*", nil},
		// whitespace around terms and after !
		{" web1 , db1 ", []string{"db1", "web1"}},
		{"web*, ! web3", []string{"web1", "web2"}},
		{"\tweb1\n", []string{"web1"}},
		{"@web ,!web1", []string{"web2", "web3"}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := target.Resolve(tt.expr, fleet, groups)
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tt.expr, err)
			}
			want := slices.Sorted(slices.Values(tt.want))
			if want == nil {
				want = []string{}
			}
			if got == nil {
				t.Fatalf("Resolve(%q) = nil, want a slice (possibly empty)", tt.expr)
			}
			if !slices.Equal(got, want) {
				t.Errorf("Resolve(%q) = %q, want %q", tt.expr, got, want)
			}
		})
	}
}

// In shell globs (and Salt's fnmatch targets) [!...] is a negated class.
// Go's path.Match reads it as a class holding '!', so db[!1-3] selects
// exactly the minions the user meant to leave out.
func TestResolveShellNegatedClass(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{"db[!1-3]", []string{"db4"}},
		{"db[!13]", []string{"db2", "db4"}},
		{"db[!1-3],web[!2]", []string{"db4", "web1", "web3"}},
		// ! before a term excludes it; [!...] inside it negates a class.
		{"db*,!db[!1]", []string{"db1"}},
		{"!db[!1-3],!*.*,!web*", []string{"db1", "db2", "db3"}},
		// ! not first in a class is a character like any other.
		{"db[1!]", []string{"db1"}},
	}
	for _, tt := range tests {
		got, err := target.Resolve(tt.expr, fleet, groups)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", tt.expr, err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Resolve(%q) = %q, want %q: [!...] is a negated class, as in a shell", tt.expr, got, tt.want)
		}
	}
}

func TestResolveSortedAndDistinct(t *testing.T) {
	names := []string{"c", "a", "b", "a"}
	got, err := target.Resolve("*", names, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("Resolve = %q, want [a b c]", got)
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		expr    string
		wantErr error  // errors.Is, if set
		msg     string // substring of the message
	}{
		{"", nil, "empty target"},
		{"   ", nil, "empty target"},
		{",", nil, "empty term"},
		{"web1,", nil, "empty term"},
		{",web1", nil, "empty term"},
		{"web1,,db1", nil, "empty term"},
		{"web1, ,db1", nil, "empty term"},
		{"!", nil, "empty term"},
		{"web*,!", nil, "empty term"},
		{"! ", nil, "empty term"},
		{"@", nil, "bad group name"},
		{"!@", nil, "bad group name"},
		{"@web*", nil, "bad group name"},
		{"@@web", nil, "bad group name"},
		{"@nosuch", target.ErrUnknownGroup, "@nosuch"},
		{"web*,!@nosuch", target.ErrUnknownGroup, "@nosuch"},
		{"db[", nil, "bad glob"},
		{"db[1-", nil, "bad glob"},
		{"[]", nil, "bad glob"},
		{`web\`, nil, "bad glob"},
		{"web*,!db[", nil, "bad glob"},
		{"db[2-1]x,web1", nil, "2-1 goes down; write 1-2"},
		// spaces between terms: a hint with commas
		{"web1 web2", nil, `separated by commas, not spaces (try "web1,web2")`},
		{"web1, web2 db1", nil, `(try "web1,web2,db1")`},
		{"@web db1", nil, `(try "@web,db1")`},
		// numeric ranges that are not well formed
		{"web[1-]", nil, `"1-" is not a number or N-M`},
		{"web[-3]", nil, `"-3" is not a number or N-M`},
		{"web[1-2-3]", nil, "not a number or N-M"},
		{"web[1,,3]", nil, "not a number or N-M"},
		{"web[1-1234567890123456789]", nil, "at most 18 digits"},
		// job terms
		{"failed:", nil, `target "failed:": want failed:JOBID`}, // the term is the target: quoted once
		{"ok:xyz", nil, `target "ok:xyz": want ok:JOBID`},
		{"web*,ok:xyz", nil, `target "web*,ok:xyz": "ok:xyz": want ok:JOBID`},
		{"failed:0190", target.ErrNoJobs, "failed:0190"},
		{"web1:22", nil, `target "web1:22": minion names have no ':'`},
		{"@web:x", nil, "bad group name"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := target.Resolve(tt.expr, fleet, groups)
			if tt.msg == "" && tt.wantErr == nil {
				if err != nil {
					t.Errorf("Resolve(%q): %v", tt.expr, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Resolve(%q) = %q, want an error", tt.expr, got)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Resolve(%q) error %v, want %v", tt.expr, err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Resolve(%q) error %q does not mention %q", tt.expr, err, tt.msg)
			}
			if got != nil {
				t.Errorf("Resolve(%q) returned names %q with its error", tt.expr, got)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		expr string
		want []target.Term
	}{
		{"web*", []target.Term{{Glob: "web*"}}},
		{"@db", []target.Term{{Group: "db"}}},
		{"!web3", []target.Term{{Exclude: true, Glob: "web3"}}},
		{"!@db", []target.Term{{Exclude: true, Group: "db"}}},
		{" web* , ! @db ", []target.Term{{Glob: "web*"}, {Exclude: true, Group: "db"}}},
		{"web[01-10,15]", []target.Term{{Glob: "web[01-10,15]"}}},
		{"web[1-3,7],!db[2,4]", []target.Term{{Glob: "web[1-3,7]"}, {Exclude: true, Glob: "db[2,4]"}}},
		{"failed:0190ABCD,!ok:0190", []target.Term{{Job: "0190abcd", Outcome: target.Failed}, {Exclude: true, Job: "0190", Outcome: target.OK}}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := target.Parse(tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Parse(%q) = %+v, want %+v", tt.expr, got, tt.want)
			}
		})
	}
}

// Parse needs no registry, so a bad expression is caught before any
// store is read; an unknown group only at Resolve.
func TestParseDoesNotKnowGroups(t *testing.T) {
	if _, err := target.Parse("@nosuch"); err != nil {
		t.Errorf("Parse(@nosuch) = %v; groups are checked by Resolve", err)
	}
}

func FuzzResolve(f *testing.F) {
	for _, s := range []string{"*", "web*,!web3", "!@db", "db[1-3]", "@web, ! web1", "", ",", "[", "@", `\`,
		"web[01-10,15]", "web[1-3]*", "r[1-2]n[01-04]", "web[9-11]", "failed:01", "[0-9]*[1,2]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		got, err := target.Resolve(expr, fleet, groups)
		if err != nil {
			return
		}
		if !slices.IsSorted(got) {
			t.Errorf("Resolve(%q) = %q, not sorted", expr, got)
		}
		for _, n := range got {
			if !slices.Contains(fleet, n) {
				t.Errorf("Resolve(%q) returned %q, not a registered name", expr, n)
			}
		}
	})
}

func TestPlainNames(t *testing.T) {
	for expr, want := range map[string][]string{
		"web1,web[2-3],!db1,@g,db*,failed:0190": {"web1"},
		"web1, db2":                             {"web1", "db2"},
		"web*":                                  nil,
		"web[":                                  nil, // not an expression
	} {
		if got := target.PlainNames(expr); !slices.Equal(got, want) {
			t.Errorf("PlainNames(%q) = %q, want %q", expr, got, want)
		}
	}
}
