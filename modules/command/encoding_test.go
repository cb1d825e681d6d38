package command_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"
)

// Output that is not valid UTF-8 cannot travel in a JSON string as it is:
// the result carries its exact bytes base64-encoded beside the text, and
// only then.
func TestRunNotUTF8(t *testing.T) {
	tests := []struct {
		name              string
		cmd               string
		stdout, stderr    string // the exact bytes
		stdoutB64, errB64 bool   // whether *_base64 is present
	}{
		{"valid UTF-8 and escapes", `printf 'h\303\251llo \033]0;t\007'; printf 'x' >&2`, "héllo \x1b]0;t\x07", "x", false, false},
		{"invalid stdout", `printf '\377\376'`, "\xff\xfe", "", true, false},
		{"invalid stderr", `printf ok; printf '\200a' >&2`, "ok", "\x80a", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := run(t, context.Background(), nil, tt.cmd)
			if err != nil {
				t.Fatal(err)
			}
			data, jerr := json.Marshal(res)
			if jerr != nil {
				t.Fatal(jerr)
			}
			var wire map[string]any
			if err := json.Unmarshal(data, &wire); err != nil {
				t.Fatal(err)
			}
			for _, s := range []struct {
				field, want string
				b64         bool
			}{{"stdout", tt.stdout, tt.stdoutB64}, {"stderr", tt.stderr, tt.errB64}} {
				enc, has := wire[s.field+"_base64"].(string)
				if has != s.b64 {
					t.Errorf("%s_base64 present %v, want %v: %s", s.field, has, s.b64, data)
					continue
				}
				if !has {
					if wire[s.field] != s.want {
						t.Errorf("%s = %q, want %q", s.field, wire[s.field], s.want)
					}
					continue
				}
				exact, err := base64.StdEncoding.DecodeString(enc)
				if err != nil || string(exact) != s.want {
					t.Errorf("%s_base64 decodes to %q (%v), want %q", s.field, exact, err, s.want)
				}
				if _, ok := wire[s.field].(string); !ok {
					t.Errorf("%s missing beside %s_base64: %s", s.field, s.field, data)
				}
			}
		})
	}
}
