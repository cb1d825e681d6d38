package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnrollRefusesBadInput(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	fp := strings.Repeat("ab", 32)
	base := []string{"--state-dir", dir, "enroll", "--server", "127.0.0.1:1"}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--state-dir", dir, "enroll", "--name", "web1", "--addr", "127.0.0.1:5000"}, "--server, --name and --addr are required"},
		{append(base, "--name", "web1"), "--server, --name and --addr are required"},
		{append(base, "--name", "10.0.0.1", "--addr", "127.0.0.1:5000", "--ca-fingerprint", fp), "IP address"},
		{append(base, "--name", "web1", "--addr", "127.0.0.1:5000", "--token", "letmein"), "not a join token"},
		{append(base, "--name", "web1", "--addr", "127.0.0.1:5000", "--ca-fingerprint", "abc"), "bad CA fingerprint"},
		{append(base, "--name", "web1", "--addr", "127.0.0.1:5000", "--key-type", "rsa"), "unknown --key-type"},
		{append(base, "--name", "web1", "--addr", "127.0.0.1:5000", "--token", "ovl1.0123456789abcdef.0123456789abcdef0123456789abcdef."+fp,
			"--ca-fingerprint", strings.Repeat("cd", 32)), "the token is for CA"},
	} {
		_, _, err := run(t, nil, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("minion %s: %v, want an error with %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
	// Nothing was written: no key made for a request never sent.
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("state directory made: %v", err)
	}
}
