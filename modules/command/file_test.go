package command_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/modules/command"
)

// Spec.File runs the open file, not what its path names by then: a #!
// script and a binary, with the argv given.
func TestExecFile(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "s")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho opened \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(script)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.WriteFile(script+".new", []byte("#!/bin/sh\necho replaced\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(script+".new", script); err != nil {
		t.Fatal(err)
	}
	res, err := command.Exec(context.Background(), command.Spec{Argv: []string{script, "a", "b"}, File: f})
	if err != nil || res.Stdout != "opened a b\n" {
		t.Errorf("Exec of an open script replaced since: %q, %v, want it run with its args", res.Stdout, err)
	}

	sh, err := os.Open("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	res, err = command.Exec(context.Background(), command.Spec{Argv: []string{"my-name", "-c", `echo "$0"`}, File: sh})
	if err != nil || strings.TrimSpace(res.Stdout) != "my-name" {
		t.Errorf("Exec of an open binary: %q, %v, want argv[0] kept", res.Stdout, err)
	}
}
