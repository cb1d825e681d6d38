package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/status"
)

// A plugin's description is the minion's word: printed in text, its
// escape sequences are shown, not obeyed.
func TestModulesTextEscapes(t *testing.T) {
	var out bytes.Buffer
	a := &App{Stdout: &out}
	groups := []moduleGroup{
		{minions: []string{"m1"}, version: "1\x1b[2J", modules: []modules.ModuleInfo{{
			Name: "evil", Plugin: true, Doc: "Says hi.\x1b]0;pwned\x07",
			Methods: []modules.MethodInfo{{Name: "run", Doc: "Runs\r\x1b[1A.", Returns: "\u202eexe",
				Params: []modules.Param{{Name: "x", Type: "string", Doc: "an \x9b2J x"}}}},
		}}},
		{minions: []string{"m2"}, err: &status.Error{Kind: status.KindUnreachable, Message: "no\x07"}},
	}
	if err := a.printModules(groups, true); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if strings.ContainsAny(got, "\x1b\x07\r\u202e") || strings.Contains(got, "\x9b") {
		t.Errorf("modules text holds control characters:\n%q", got)
	}
	for _, want := range []string{"m1 (minion 1^[[2J):", "Says hi.^[]0;pwned^G", `-> \u202eexe`, "Runs ^[[1A.", `an \x9b2J x`, "m2: ERROR unreachable: no^G"} {
		if !strings.Contains(got, want) {
			t.Errorf("modules text lacks %q:\n%s", want, got)
		}
	}
}

func TestWrapText(t *testing.T) {
	tests := []struct {
		name, s, indent string
		at, width       int
		want            string
	}{
		{"fits", "a b c", "  ", 0, 10, "a b c"},
		{"wraps at spaces", "aaa bbb ccc ddd", "  ", 0, 9, "aaa bbb\n  ccc ddd"},
		{"first line starts late", "aaa bbb ccc", "..", 5, 10, "aaa\n..bbb ccc"},
		{"long word stays whole", "aaaaaaaaaaaa b", "", 0, 5, "aaaaaaaaaaaa\nb"},
		{"spaces collapsed", "  a \n b  ", "", 0, 80, "a b"},
		{"characters, not bytes", "日本語 日本語 日本語", "", 0, 7, "日本語 日本語\n日本語"},
		{"empty", "", "  ", 0, 10, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := wrapText(tt.s, tt.at, tt.indent, tt.width); got != tt.want {
				t.Errorf("wrapText(%q, %d, %q, %d) = %q, want %q", tt.s, tt.at, tt.indent, tt.width, got, tt.want)
			}
		})
	}
}
