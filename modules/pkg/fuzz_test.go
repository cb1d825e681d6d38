package pkg_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/modules/pkg"
	"github.com/overlordhq/overlord/status"
)

// FuzzQueryName checks that a name query accepts could never be read as
// an option or expanded by a shell or a glob.
func FuzzQueryName(f *testing.F) {
	for _, seed := range []string{"bash", "libc6:amd64", "g++", "-rf", "--admindir=/x", "a b", "lib*", "$(x)", "a;b", "", "é", "x\n"} {
		f.Add(seed)
	}
	// No package manager: a name that passes validation ends in the
	// module_error saying so, and nothing runs.
	m := pkg.Module{LookPath: func(string) (string, error) { return "", exec.ErrNotFound }}
	f.Fuzz(func(t *testing.T, name string) {
		_, err := call(t, m, context.Background(), "query", name)
		switch status.KindOf(err) {
		case status.KindBadArgs:
			return
		case status.KindModuleError:
		default:
			t.Fatalf("query %q: %v", name, err)
		}
		if name == "" || name[0] == '-' || len(name) > 256 || strings.ContainsAny(name, " \t\n\r\x00$;&|<>*?[]{}()'\"`\\/=!#%,@") {
			t.Fatalf("query accepted %q", name)
		}
	})
}
