// Package moddoc renders module descriptions as Markdown: docs/modules.md
// is generated from the same descriptions the minion checks arguments
// against and `overlord modules` shows, so the three cannot drift apart.
// Regenerate it with `make docs` (go test ./internal/moddoc -update).
package moddoc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/overlordhq/overlord/modules"
)

// Render returns the Markdown reference for mods.
func Render(mods []modules.ModuleInfo) []byte {
	var b bytes.Buffer
	b.WriteString("# Modules\n\n")
	b.WriteString("<!-- Generated from the modules' own descriptions by internal/moddoc: do not edit; run `make docs`. -->\n\n")
	b.WriteString("The built-in modules of a minion. Every method declares its parameters; the\n")
	b.WriteString("minion checks the arguments against them before anything runs, and a wrong\n")
	b.WriteString("or missing one is `bad_args`, naming the parameter. On the command line,\n")
	b.WriteString("`name=value` names a parameter, and plain words fill the parameters a\n")
	b.WriteString("method takes by position, in order (see [cli.md](cli.md#method-arguments));\n")
	b.WriteString("the others take `name=value` only. `overlord modules TARGET [MODULE]` shows\n")
	b.WriteString("the same descriptions, plugins included, from the minions themselves.\n\n")
	b.WriteString("Types: `string`, `int`, `float`, `bool`, `list`, `object`, `duration` (a\n")
	b.WriteString("Go duration such as `1m30s`, or a number of seconds), `any`; `a|b` takes\n")
	b.WriteString("either. Plugins: see [plugins.md](plugins.md).\n\n")
	for _, m := range mods {
		fmt.Fprintf(&b, "- [%s](#%s): %s\n", m.Name, m.Name, m.Doc)
	}
	for _, m := range mods {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n", m.Name, m.Doc)
		for _, meth := range m.Methods {
			fmt.Fprintf(&b, "\n### %s.%s\n\n%s\n", m.Name, meth.Name, meth.Doc)
			if meth.Returns != "" {
				fmt.Fprintf(&b, "\nReturns: %s\n", meth.Returns)
			}
			if len(meth.Params) == 0 {
				b.WriteString("\nNo parameters.\n")
				continue
			}
			if meth.Positional != nil {
				names := make([]string, 0, *meth.Positional)
				for _, p := range meth.Params[:min(*meth.Positional, len(meth.Params))] {
					names = append(names, "`"+p.Name+"`")
				}
				if len(names) == 0 {
					b.WriteString("\nBy position: none.\n")
				} else {
					fmt.Fprintf(&b, "\nBy position: %s.\n", strings.Join(names, ", "))
				}
			}
			b.WriteString("\n| parameter | type | | description |\n|---|---|---|---|\n")
			for _, p := range meth.Params {
				req := "optional"
				if p.Required {
					req = "required"
				}
				if p.Default != nil {
					d, _ := json.Marshal(p.Default)
					req = "default `" + string(d) + "`"
				}
				fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s |\n", p.Name, p.Type, req, strings.ReplaceAll(p.Doc, "|", "\\|"))
			}
		}
	}
	return b.Bytes()
}
