package plugin_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/plugin"
)

// sha256File returns the hex SHA-256 of the file at path.
func sha256File(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func describeAll(r *modules.Registry) map[string]modules.ModuleInfo {
	infos := map[string]modules.ModuleInfo{}
	for _, m := range r.DescribeAll() {
		infos[m.Name] = m
	}
	return infos
}

// A plugin's description carries the SHA-256 of its file and the version
// it declares; both follow the file when it changes. A broken plugin has
// its checksum too; a built-in module has neither.
func TestPluginChecksumAndVersion(t *testing.T) {
	r, dir := registry(t)
	versioned := strings.Replace(hello, `{"doc": "Say hello.",`, `{"doc": "Say hello.", "version": "1.2.0",`, 1)
	writePlugin(t, dir, "hello", versioned, 0o755)
	writePlugin(t, dir, "fails", "#!/bin/sh\nexit 1\n", 0o755)

	infos := describeAll(r)
	if got, want := infos["hello"].SHA256, sha256File(t, filepath.Join(dir, "hello")); got != want {
		t.Errorf("hello's sha256 = %q, want %q", got, want)
	}
	if infos["hello"].Version != "1.2.0" {
		t.Errorf("hello's version = %q, want 1.2.0", infos["hello"].Version)
	}
	if got, want := infos["fails"].SHA256, sha256File(t, filepath.Join(dir, "fails")); got != want || infos["fails"].Error == "" {
		t.Errorf("broken plugin: %+v, want its error and sha256 %s", infos["fails"], want)
	}
	if infos["command"].SHA256 != "" || infos["command"].Version != "" {
		t.Errorf("built-in command: %+v, want no sha256 and no version", infos["command"])
	}

	// Changed in place (same inode): a new checksum and version.
	writePlugin(t, dir, "hello", strings.Replace(versioned, "1.2.0", "1.3.0", 1), 0o755)
	infos = describeAll(r)
	if got, want := infos["hello"].SHA256, sha256File(t, filepath.Join(dir, "hello")); got != want || infos["hello"].Version != "1.3.0" {
		t.Errorf("after a change: sha256 %q version %q, want %q and 1.3.0", got, infos["hello"].Version, want)
	}
}

func TestParseDescriptionVersion(t *testing.T) {
	for _, v := range []string{`"1 2"`, `"` + strings.Repeat("1", plugin.MaxVersion+1) + `"`, `"v\u0007"`, `"é"`, `3`} {
		in := `{"doc":"","version":` + v + `,"methods":[{"name":"m"}]}`
		if _, err := plugin.ParseDescription([]byte(in)); err == nil {
			t.Errorf("version %s accepted", v)
		}
	}
	d, err := plugin.ParseDescription([]byte(`{"doc":"","version":"2.0.1-rc1+g3f2a","methods":[{"name":"m"}]}`))
	if err != nil || d.Version != "2.0.1-rc1+g3f2a" {
		t.Errorf("good version: %+v, %v", d, err)
	}
}
