package builtin_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/builtin"
)

var knownTypes = []modules.Type{modules.String, modules.Int, modules.Float, modules.Bool,
	modules.List, modules.Object, modules.Duration, modules.Any}

// Every built-in declaration is well-formed: documented, with known
// parameter types, distinct names and no default on a required parameter.
// A default must itself pass the parameter's type check.
func TestDeclarations(t *testing.T) {
	r := builtin.Registry()
	if got := r.Names(); !slices.Equal(got, []string{"command", "facts", "file", "mount", "package", "process", "service", "sysctl", "system", "test"}) {
		t.Fatalf("Names = %v", got)
	}
	for _, mod := range r.DescribeAll() {
		if mod.Doc == "" {
			t.Errorf("module %s has no doc", mod.Name)
		}
		for _, meth := range mod.Methods {
			name := mod.Name + "." + meth.Name
			if meth.Doc == "" {
				t.Errorf("%s has no doc", name)
			}
			seen := map[string]bool{}
			for _, p := range meth.Params {
				if seen[p.Name] {
					t.Errorf("%s declares %s twice", name, p.Name)
				}
				seen[p.Name] = true
				if p.Doc == "" {
					t.Errorf("%s parameter %s has no doc", name, p.Name)
				}
				for _, typ := range strings.Split(string(p.Type), "|") {
					if !slices.Contains(knownTypes, modules.Type(typ)) {
						t.Errorf("%s parameter %s has unknown type %q", name, p.Name, typ)
					}
				}
				if p.Required && p.Default != nil {
					t.Errorf("%s parameter %s is required and has a default", name, p.Name)
				}
			}
			// Defaults pass their own checks: binding the required
			// parameters alone must succeed.
			m, err := r.Lookup(mod.Name, meth.Name)
			if err != nil {
				t.Fatal(err)
			}
			var pos []any
			for _, p := range meth.Params {
				if !p.Required {
					break
				}
				pos = append(pos, sample(p.Type))
			}
			if _, err := m.Bind(nil, pos); err != nil {
				t.Errorf("%s with only its required parameters: %v", name, err)
			}
			for _, p := range meth.Params {
				if p.Default == nil {
					continue
				}
				if _, err := m.Bind(map[string]any{p.Name: p.Default}, pos); err != nil {
					t.Errorf("%s: the default of %s fails its own type: %v", name, p.Name, err)
				}
			}
		}
	}
}

func sample(t modules.Type) any {
	switch modules.Type(strings.Split(string(t), "|")[0]) {
	case modules.String:
		return "x"
	case modules.Bool:
		return true
	case modules.List:
		return []any{}
	case modules.Object:
		return map[string]any{}
	case modules.Duration:
		return "1s"
	}
	return 1.0
}

func TestRegistriesAreSeparate(t *testing.T) {
	a, b := builtin.Registry(), builtin.Registry()
	if err := a.Add(fake{}); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(b.Names(), "fake") {
		t.Error("a module added to one registry shows in another: shared state")
	}
}

type fake struct{}

func (fake) Name() string               { return "fake" }
func (fake) Doc() string                { return "" }
func (fake) Methods() []*modules.Method { return nil }
