package moddoc_test

import (
	"bytes"
	"flag"
	"os"
	"testing"

	"github.com/overlordhq/overlord/internal/moddoc"
	"github.com/overlordhq/overlord/modules/builtin"
)

var update = flag.Bool("update", false, "rewrite docs/modules.md")

const path = "../../docs/modules.md"

// TestModulesDocUpToDate fails when docs/modules.md no longer matches the
// built-in modules' descriptions.
func TestModulesDocUpToDate(t *testing.T) {
	got := moddoc.Render(builtin.Registry().DescribeAll())
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run: make docs)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("docs/modules.md is out of date with the modules' descriptions: run make docs")
	}
}
