package target_test

import (
	"testing"

	"github.com/overlordhq/overlord/target"
)

func TestWhere(t *testing.T) {
	facts := map[string]any{
		"os": "debian", "os_version": "12", "memory_bytes": 16e9, "cpus": float64(4),
		"hostname": "web1", "ip_addresses": []any{"10.0.0.5", "fe80::1"},
		"disk": map[string]any{"root": 100.0},
	}
	tests := []struct {
		cond string
		want bool
	}{
		{"os=debian", true}, {"os=Debian", true}, {"os!=debian", false}, {"os=rhel", false},
		{"memory_bytes>=8e9", true}, {"memory_bytes<8e9", false}, {"cpus=4", true}, {"cpus > 4", false},
		{"os_version>=12", true}, {"os_version<12", false},
		{"hostname~^web[0-9]+$", true}, {"hostname~^db", false},
		{"ip_addresses=10.0.0.5", true}, {"ip_addresses~^fe80", true}, {"ip_addresses=1.2.3.4", false},
		{"disk.root>50", true}, {"missing=x", false}, {"missing!=x", false}, {"os>3", false},
	}
	for _, tt := range tests {
		c, err := target.ParseWhere(tt.cond)
		if err != nil {
			t.Errorf("%s: %v", tt.cond, err)
			continue
		}
		if got := c.Match(facts); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.cond, got, tt.want)
		}
	}
	for _, bad := range []string{"", "os", "=x", "mem>=lots", "hostname~(", "1os=x"} {
		if _, err := target.ParseWhere(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func FuzzWhere(f *testing.F) {
	for _, s := range []string{"os=debian", "memory_bytes>=8e9", "hostname~^web", "a.b!=3", "x<", "~"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := target.ParseWhere(s)
		if err != nil {
			return
		}
		c.Match(map[string]any{"os": "debian", "n": 3.0, "l": []any{"a"}, "o": map[string]any{"k": "v"}})
	})
}

func TestWhereListsAndNumbers(t *testing.T) {
	facts := map[string]any{"ip_addresses": []any{"10.0.0.5", "192.0.2.2"}, "memory_bytes": 25276514304.0}
	for cond, want := range map[string]bool{
		"ip_addresses!=192.0.2.2":   false, // it has it: not selected
		"ip_addresses!=1.2.3.4":     true,
		"memory_bytes~^2527":        true,
		"memory_bytes==25276514304": true,
	} {
		c, err := target.ParseWhere(cond)
		if err != nil {
			t.Fatalf("%s: %v", cond, err)
		}
		if got := c.Match(facts); got != want {
			t.Errorf("%s: %v, want %v", cond, got, want)
		}
	}
	if _, err := target.Resolve("!!web1", []string{"web1", "web2"}, nil); err == nil {
		t.Error("!!web1 accepted")
	}
}
