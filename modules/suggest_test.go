package modules_test

import (
	"testing"

	"github.com/overlordhq/overlord/modules/builtin"
)

// Typo catches the misspellings of built-in names a user makes, and
// leaves alone names that are far from every built-in (plugins, methods of
// newer minions) and names that exist.
func TestTypo(t *testing.T) {
	reg := builtin.Registry()
	for _, tc := range []struct {
		module, method, want string
	}{
		{"comand", "run", "command.run"},
		{"commnad", "run", "command.run"},
		{"command", "rnu", "command.run"},
		{"test", "pnig", "test.ping"},
		{"tset", "ping", "test.ping"},
		{"comand", "runn", "command.run"},
		{"command", "run", ""},        // exists
		{"test", "ping", ""},          // exists
		{"greet", "hello", ""},        // a plugin: far from every built-in
		{"test", "brand_new_one", ""}, // a newer minion's method, maybe
		{"fs", "stat", ""},            // too short to judge
	} {
		got, ok := reg.Typo(tc.module, tc.method)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("Typo(%s.%s) = %q, %v; want %q", tc.module, tc.method, got, ok, tc.want)
		}
	}
}
