package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/enrolment"
)

func TestTokenCommands(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")

	out := h.must("token", "create", "--ttl", "1h", "--uses", "3")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	tok, err := enrolment.ParseToken(lines[len(lines)-1])
	if err != nil {
		t.Fatalf("last line is not a token: %v\n%s", err, out)
	}
	if !strings.Contains(out, "3 enrolments until") || !strings.Contains(out, "CA fingerprint "+tok.CAFingerprint) {
		t.Errorf("output:\n%s", out)
	}

	var created struct {
		Token, ID, State string
		CAFingerprint    string `json:"ca_fingerprint"`
		Uses, Used       int
	}
	if err := json.Unmarshal([]byte(h.must("token", "create", "-o", "json")), &created); err != nil {
		t.Fatal(err)
	}
	if created.CAFingerprint != tok.CAFingerprint || created.Uses != 1 || created.State != "valid" || !strings.Contains(created.Token, created.ID) {
		t.Errorf("JSON: %+v", created)
	}

	list := h.must("token", "list")
	if !strings.Contains(list, tok.ID) || !strings.Contains(list, "0/3") || strings.Contains(list, tok.Secret) {
		t.Errorf("token list:\n%s", list)
	}
	var listed []map[string]any
	if err := json.Unmarshal([]byte(h.must("token", "list", "-o", "json")), &listed); err != nil || len(listed) != 2 {
		t.Fatalf("token list -o json: %v %v", listed, err)
	}
	if _, ok := listed[0]["token"]; ok {
		t.Error("token list shows a token's secret")
	}
	if got := h.must("token", "delete", tok.ID); !strings.Contains(got, "deleted") {
		t.Errorf("delete: %s", got)
	}
	for _, args := range [][]string{
		{"token", "delete", tok.ID},
		{"token", "create", "--ttl", "0s"},
		{"token", "create", "--uses", "0"},
		{"token", "create", "-o", "yaml"},
		{"token", "nosuch"},
	} {
		if r := h.run(args...); r.code != 2 {
			t.Errorf("overlord %s: exit %d, want 2", strings.Join(args, " "), r.code)
		}
	}
}
