package service

import (
	"strings"
	"testing"
)

// FuzzUnitName checks that no name unitName accepts could reach systemctl
// as an option or a path.
func FuzzUnitName(f *testing.F) {
	for _, s := range []string{"nginx", "nginx.service", "getty@tty1", "-H", "--root=/", "a/b", "..", ".service", "a b", `a\x2db`, "ssh.socket", "x.service.service"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, err := unitName("status", s)
		if err != nil {
			return
		}
		if strings.HasPrefix(name, "-") || strings.ContainsAny(name, "/ \t\n\x00*?[") || len(name) > maxUnitName {
			t.Fatalf("unitName(%q) = %q", s, name)
		}
		again, err := unitName("status", name)
		if err != nil || again != name {
			t.Fatalf("unitName(%q) = %q, then %q, %v", s, name, again, err)
		}
	})
}
