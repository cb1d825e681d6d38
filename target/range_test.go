package target_test

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/target"
)

// rangeFleet holds unpadded and padded names side by side, so that a
// range matching the wrong form shows.
var rangeFleet = []string{
	"web1", "web2", "web3", "web9", "web10", "web11", "web12", "web15", "web100",
	"web01", "web02", "web09", "web010",
	"web1a", "web1b", "web12a",
	"rack1-node01", "rack1-node02", "rack2-node01", "rack2-node05", "rack3-node01",
	"dba", "dbb", "dbc", "dbd",
	"x0", "x00",
}

func TestResolveRanges(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		// numeric ranges, written without leading zeros: no padded names
		{"web[1-10]", []string{"web1", "web10", "web2", "web3", "web9"}},
		{"web[9-11]", []string{"web10", "web11", "web9"}},
		{"web[1-3,15]", []string{"web1", "web15", "web2", "web3"}},
		{"web[15,2]", []string{"web15", "web2"}},
		{"web[100-100]", []string{"web100"}},
		{"web[2-2,9]", []string{"web2", "web9"}},
		// zero-padded: the width of the bound written with a leading zero
		{"web[01-10]", []string{"web01", "web02", "web09", "web10"}},
		{"web[01-10,15]", []string{"web01", "web02", "web09", "web10", "web15"}},
		{"web[001-010]", []string{"web010"}},
		{"web[09-100]", []string{"web09", "web10", "web100", "web11", "web12", "web15"}},
		{"x[0-0]", []string{"x0"}},
		{"x[00-00]", []string{"x00"}},
		// single digits are the same as a glob class
		{"web[1-3]", []string{"web1", "web2", "web3"}},
		// combined with globs and other ranges, as if expanded
		{"web[1-3]*", []string{"web1", "web10", "web100", "web11", "web12", "web12a", "web15", "web1a", "web1b", "web2", "web3"}},
		{"web[10-12]?", []string{"web100", "web12a"}}, // web10? matches web100
		{"web[1,12][ab]", []string{"web12a", "web1a", "web1b"}},
		{"rack[1-2]-node[01-02]", []string{"rack1-node01", "rack1-node02", "rack2-node01"}},
		{"rack*-node[01-04]", []string{"rack1-node01", "rack1-node02", "rack2-node01", "rack3-node01"}},
		{"rack[1-3]-node01,!rack2*", []string{"rack1-node01", "rack3-node01"}},
		{"web*,!web[1-100]", []string{"web01", "web010", "web02", "web09", "web12a", "web1a", "web1b"}},
		// other brackets keep their glob meaning
		{"db[a-c]", []string{"dba", "dbb", "dbc"}},
		{"db[!a-c]", []string{"dbd"}},
		{"web[!3]", []string{"web1", "web2", "web9"}},
		{"web[13]", []string{"web1", "web3"}}, // digits without , or -: a class
		{"web1[ab]", []string{"web1a", "web1b"}},
		// a huge range is matched, not expanded
		{"web[1-100000000]", []string{"web1", "web10", "web100", "web11", "web12", "web15", "web2", "web3", "web9"}},
		{"web[0-999999999999999999]", []string{"web1", "web10", "web100", "web11", "web12", "web15", "web2", "web3", "web9"}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := target.Resolve(tt.expr, rangeFleet, nil)
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tt.expr, err)
			}
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Errorf("Resolve(%q) = %q, want %q", tt.expr, got, want)
			}
		})
	}
}

// A range of single digits selects what the same glob class selects, so
// targets written before ranges existed keep their meaning.
func TestRangeOfDigitsIsTheGlobClass(t *testing.T) {
	var names []string
	for i := range 30 {
		names = append(names, fmt.Sprintf("n%d", i), fmt.Sprintf("n%dx", i))
		if i < 10 {
			names = append(names, fmt.Sprintf("n%02d", i))
		}
	}
	for _, expr := range []string{"n[1-3]", "n[0-9]", "n[2-2]", "n[1-3]x", "n[0-9]*", "n?[5-7]", "n[3-5]?"} {
		got, err := target.Resolve(expr, names, nil)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, n := range names {
			if ok, _ := path.Match(expr, n); ok {
				want = append(want, n)
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("Resolve(%q) = %q, path.Match selects %q", expr, got, want)
		}
	}
}

func TestResolveJobs(t *testing.T) {
	jobs := map[string][2][]string{ // id: ok, failed
		"0190aaaa-0001": {{"web1", "web2"}, {"web3", "gone"}},
		"0190bbbb-0002": {{"db1"}, nil},
	}
	var asked []string
	src := target.Sources{
		Names:  fleet,
		Groups: groups,
		Job: func(id string) ([]string, []string, error) {
			asked = append(asked, id)
			for full, j := range jobs {
				if strings.HasPrefix(full, id) {
					return j[0], j[1], nil
				}
			}
			return nil, nil, errors.New("no such job")
		},
	}
	tests := []struct {
		expr string
		want []string
	}{
		{"failed:0190aaaa-0001", []string{"web3"}}, // gone is not registered
		{"ok:0190aaaa", []string{"web1", "web2"}},
		{"ok:0190AAAA", []string{"web1", "web2"}},
		{"ok:0190aaaa,!web1", []string{"web2"}},
		{"failed:0190aaaa,ok:0190bbbb", []string{"db1", "web3"}},
		{"failed:0190bbbb", []string{}},
		{"web*,!ok:0190aaaa", []string{"web3"}},
		{"!failed:0190aaaa", []string{"a.example.org", "b.example.org", "db1", "db2", "db3", "db4", "example.org", "mail.example.com", "web1", "web2"}},
	}
	for _, tt := range tests {
		got, err := target.ResolveIn(tt.expr, src)
		if err != nil {
			t.Fatalf("ResolveIn(%q): %v", tt.expr, err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("ResolveIn(%q) = %q, want %q", tt.expr, got, tt.want)
		}
	}
	_, err := target.ResolveIn("failed:0190cccc", src)
	if err == nil || !strings.Contains(err.Error(), "failed:0190cccc: no such job") {
		t.Errorf("unknown job: err = %v, want it named with the resolver's error", err)
	}
	if !slices.Contains(asked, "0190aaaa") {
		t.Errorf("the resolver was asked %q; want the prefix as typed (lower case)", asked)
	}
}

func TestBareGroups(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{"web", []string{"web"}},
		{"web,db", []string{"web", "db"}},
		{"web*", nil},
		{"@web", nil},
		{"!web", nil},
		{"web1", nil},
		{"web[1-2]", nil},
	}
	for _, tt := range tests {
		if got := target.BareGroups(tt.expr, groups); !slices.Equal(got, tt.want) {
			t.Errorf("BareGroups(%q) = %q, want %q", tt.expr, got, tt.want)
		}
	}
}

// Matching a range costs the same whatever its size: it is never
// expanded. Allocation is bounded by the names, not the range.
func TestHugeRangeNotExpanded(t *testing.T) {
	names := []string{"web1", "web99999999999999999", "web123456789012345678"}
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := target.Resolve("web[1-999999999999999999]", names, nil); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 200 {
		t.Errorf("resolving a huge range made %.0f allocations; it must not expand the range", allocs)
	}
	got, _ := target.Resolve("web[1-999999999999999999]", names, nil)
	if !slices.Equal(got, []string{"web1", "web123456789012345678", "web99999999999999999"}) {
		t.Errorf("got %q", got)
	}
}
