package file_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/modules/file"
	"github.com/overlordhq/overlord/status"
)

// call calls file.METHOD through a registry, as the minion does.
func call(t *testing.T, method string, named map[string]any, positional ...any) (any, *status.Error) {
	t.Helper()
	r := modules.NewRegistry()
	if err := r.Add(file.Module{}); err != nil {
		t.Fatal(err)
	}
	got, err := r.Call(context.Background(), "file", method, named, positional)
	if err == nil {
		return got, nil
	}
	var se *status.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a *status.Error", err, err)
	}
	return got, se
}

// mustCall is call for calls that must succeed.
func mustCall[T any](t *testing.T, method string, named map[string]any, positional ...any) T {
	t.Helper()
	got, err := call(t, method, named, positional...)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	v, ok := got.(T)
	if !ok {
		t.Fatalf("%s returned %T, want %T", method, got, v)
	}
	return v
}

func writeFile(t *testing.T, path, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// leftovers returns the names in dir that look like write's temporary files.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestDocs(t *testing.T) {
	m := file.Module{}
	if m.Name() != "file" || m.Doc() == "" {
		t.Errorf("name %q doc %q", m.Name(), m.Doc())
	}
	for _, meth := range m.Methods() {
		if meth.Doc == "" || meth.Returns == "" || meth.Run == nil {
			t.Errorf("%s: doc %q returns %q", meth.Name, meth.Doc, meth.Returns)
		}
		for _, p := range meth.Params {
			if p.Doc == "" {
				t.Errorf("%s: parameter %s has no doc", meth.Name, p.Name)
			}
		}
	}
}

func TestStat(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f.txt")
	writeFile(t, f, "hello", 0o640)
	suid := filepath.Join(dir, "suid")
	writeFile(t, suid, "", 0o755|fs.ModeSetuid)
	link := filepath.Join(dir, "link")
	if err := os.Symlink("f.txt", link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		path   string
		exists bool
		typ    string
		size   int64
		mode   string
		target string
	}{
		{name: "file", path: f, exists: true, typ: "file", size: 5, mode: "0640"},
		{name: "setuid", path: suid, exists: true, typ: "file", mode: "4755"},
		{name: "directory", path: sub, exists: true, typ: "dir", mode: "0700"},
		{name: "symlink not followed", path: link, exists: true, typ: "symlink", size: 5, mode: "0777", target: "f.txt"},
		{name: "fifo", path: fifo, exists: true, typ: "other", mode: "0600"},
		{name: "missing", path: filepath.Join(dir, "nope")},
		{name: "under a file", path: filepath.Join(f, "x")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := mustCall[file.Stat](t, "stat", nil, tt.path)
			if st.Path != tt.path || st.Exists != tt.exists {
				t.Fatalf("path %q exists %v; want %q %v", st.Path, st.Exists, tt.path, tt.exists)
			}
			if !tt.exists {
				if st.Attrs != nil {
					t.Errorf("attrs of a missing path: %+v", st.Attrs)
				}
				data, _ := json.Marshal(st)
				if want := `{"path":` + strconv.Quote(tt.path) + `,"exists":false}`; string(data) != want {
					t.Errorf("JSON %s, want %s", data, want)
				}
				return
			}
			if tt.typ == "dir" {
				st.Size = 0 // depends on the file system
			}
			if st.Type != tt.typ || st.Size != tt.size || st.Mode != tt.mode || st.Target != tt.target {
				t.Errorf("type %q size %d mode %q target %q; want %q %d %q %q", st.Type, st.Size, st.Mode, st.Target, tt.typ, tt.size, tt.mode, tt.target)
			}
			if strconv.Itoa(st.UID) != me.Uid || st.Owner != me.Username || st.Group == "" {
				t.Errorf("uid %d owner %q group %q; want %s %s", st.UID, st.Owner, st.Group, me.Uid, me.Username)
			}
			data, _ := json.Marshal(st)
			for _, want := range []string{`"exists":true`, `"type":"` + tt.typ + `"`, `"mode":"` + tt.mode + `"`, `"owner":"` + me.Username + `"`, `"mtime":"`} {
				if !strings.Contains(string(data), want) {
					t.Errorf("JSON %s lacks %s", data, want)
				}
			}
			if time.Since(st.MTime) > time.Minute {
				t.Errorf("mtime %s", st.MTime)
			}
		})
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "text")
	writeFile(t, text, "héllo\n", 0o644)
	bin := filepath.Join(dir, "bin")
	binData := []byte{0, 1, 2, 0xff, 0xfe}
	if err := os.WriteFile(bin, binData, 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	bigData := bytes.Repeat([]byte("x"), file.DefaultMaxRead+10)
	if err := os.WriteFile(big, bigData, 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, "", 0o644)

	tests := []struct {
		name      string
		named     map[string]any
		path      string
		content   string
		encoding  string
		size      int64
		truncated bool
	}{
		{name: "text", path: text, content: "héllo\n", encoding: "utf-8", size: 7},
		{name: "binary is base64", path: bin, content: base64.StdEncoding.EncodeToString(binData), encoding: "base64", size: 5},
		{name: "empty", path: empty, encoding: "utf-8"},
		{name: "max_bytes", path: text, named: map[string]any{"max_bytes": 1.0}, content: "h", encoding: "utf-8", size: 7, truncated: true},
		{name: "exactly max_bytes", path: text, named: map[string]any{"max_bytes": 7.0}, content: "héllo\n", encoding: "utf-8", size: 7},
		// "é" is 2 bytes at offsets 1-2; a cut inside it stays text.
		{name: "cut inside a character", path: text, named: map[string]any{"max_bytes": 2.0}, content: "h", encoding: "utf-8", size: 7, truncated: true},
		{name: "default cap", path: big, content: string(bigData[:file.DefaultMaxRead]), encoding: "utf-8", size: int64(len(bigData)), truncated: true},
		{name: "proc file of size 0", path: "/proc/self/status", named: map[string]any{"max_bytes": 5.0}, content: "Name:", encoding: "utf-8", truncated: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustCall[file.Read](t, "read", tt.named, tt.path)
			if r.Content != tt.content || r.Encoding != tt.encoding || r.Size != tt.size || r.Truncated != tt.truncated {
				t.Errorf("content %.40q encoding %q size %d truncated %v; want %.40q %q %d %v",
					r.Content, r.Encoding, r.Size, r.Truncated, tt.content, tt.encoding, tt.size, tt.truncated)
			}
		})
	}
}

func TestReadFailures(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	writeFile(t, f, "x", 0o644)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		named map[string]any
		path  any
		kind  status.Kind
		msg   string
	}{
		{name: "relative path", path: "etc/passwd", kind: status.KindBadArgs, msg: "must be an absolute path"},
		{name: "empty path", path: "", kind: status.KindBadArgs, msg: "must be an absolute path"},
		{name: "path not a string", path: 3.0, kind: status.KindBadArgs, msg: "parameter path: want string"},
		{name: "max_bytes over the cap", path: f, named: map[string]any{"max_bytes": float64(file.MaxRead + 1)}, kind: status.KindBadArgs, msg: "max_bytes: must be between 1 and 16777216"},
		{name: "zero max_bytes", path: f, named: map[string]any{"max_bytes": 0.0}, kind: status.KindBadArgs, msg: "max_bytes"},
		{name: "missing", path: filepath.Join(dir, "nope"), kind: status.KindModuleError, msg: "no such file"},
		{name: "directory", path: dir, kind: status.KindModuleError, msg: "is a directory, not a regular file"},
		{name: "fifo does not block", path: fifo, kind: status.KindModuleError, msg: "is a FIFO, not a regular file"},
		{name: "device", path: "/dev/zero", kind: status.KindModuleError, msg: "is a device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := call(t, "read", tt.named, tt.path)
			if err == nil || err.Kind != tt.kind || !strings.Contains(err.Message, tt.msg) {
				t.Errorf("error %v, want %s saying %q", err, tt.kind, tt.msg)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing")
	writeFile(t, existing, "old", 0o600)
	link := filepath.Join(dir, "link")
	linkTarget := filepath.Join(dir, "link-target")
	writeFile(t, linkTarget, "target", 0o644)
	if err := os.Symlink(linkTarget, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		named   map[string]any
		content string // what the file holds after
		mode    fs.FileMode
	}{
		{name: "new file", path: filepath.Join(dir, "new"), named: map[string]any{"content": "hello\n"}, content: "hello\n", mode: 0o644},
		{name: "empty", path: filepath.Join(dir, "empty"), named: map[string]any{"content": ""}, mode: 0o644},
		{name: "mode ignores the umask", path: filepath.Join(dir, "m"), named: map[string]any{"content": "x", "mode": "0666"}, content: "x", mode: 0o666},
		{name: "mode without leading zero", path: filepath.Join(dir, "m2"), named: map[string]any{"content": "x", "mode": "750"}, content: "x", mode: 0o750},
		{name: "setuid mode", path: filepath.Join(dir, "m3"), named: map[string]any{"content": "x", "mode": "4711"}, content: "x", mode: 0o711 | fs.ModeSetuid},
		{name: "replace keeps the mode", path: existing, named: map[string]any{"content": "new"}, content: "new", mode: 0o600},
		{name: "base64", path: filepath.Join(dir, "bin"), named: map[string]any{"content": "AAH/", "encoding": "base64"}, content: "\x00\x01\xff", mode: 0o644},
		{name: "mkdirs", path: filepath.Join(dir, "a", "b", "c"), named: map[string]any{"content": "deep", "mkdirs": true}, content: "deep", mode: 0o644},
		{name: "symlink replaced", path: link, named: map[string]any{"content": "replaced"}, content: "replaced", mode: 0o644},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := mustCall[file.Write](t, "write", tt.named, tt.path)
			if w.Path != tt.path || w.Size != int64(len(tt.content)) || w.SHA256 != sha(tt.content) {
				t.Errorf("result %+v; want size %d sha256 %s", w, len(tt.content), sha(tt.content))
			}
			fi, err := os.Lstat(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if !fi.Mode().IsRegular() || fi.Mode()&(fs.ModePerm|fs.ModeSetuid) != tt.mode {
				t.Errorf("mode %s, want a regular file with %s", fi.Mode(), tt.mode)
			}
			data, err := os.ReadFile(tt.path)
			if err != nil || string(data) != tt.content {
				t.Errorf("file holds %q (%v), want %q", data, err, tt.content)
			}
			if l := leftovers(t, filepath.Dir(tt.path)); len(l) > 0 {
				t.Errorf("temporary files left: %v", l)
			}
		})
	}
	if data, _ := os.ReadFile(linkTarget); string(data) != "target" {
		t.Errorf("the symlink's old target now holds %q", data)
	}
}

func TestWriteFailures(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	writeFile(t, f, "x", 0o644)
	tests := []struct {
		name  string
		path  string
		named map[string]any
		kind  status.Kind
		msg   string
	}{
		{name: "relative path", path: "tmp/x", named: map[string]any{"content": ""}, kind: status.KindBadArgs, msg: "absolute path"},
		{name: "no content", path: filepath.Join(dir, "n"), kind: status.KindBadArgs, msg: "missing required parameter content"},
		{name: "bad encoding", path: filepath.Join(dir, "n"), named: map[string]any{"content": "", "encoding": "latin1"}, kind: status.KindBadArgs, msg: "want utf-8 or base64"},
		{name: "bad base64", path: filepath.Join(dir, "n"), named: map[string]any{"content": "!!", "encoding": "base64"}, kind: status.KindBadArgs, msg: "not valid base64"},
		{name: "mode not octal", path: filepath.Join(dir, "n"), named: map[string]any{"content": "", "mode": "0689"}, kind: status.KindBadArgs, msg: "parameter mode"},
		{name: "mode too large", path: filepath.Join(dir, "n"), named: map[string]any{"content": "", "mode": "17777"}, kind: status.KindBadArgs, msg: "parameter mode"},
		{name: "mode as number", path: filepath.Join(dir, "n"), named: map[string]any{"content": "", "mode": 420.0}, kind: status.KindBadArgs, msg: "parameter mode: want string"},
		{name: "missing parent", path: filepath.Join(dir, "no", "n"), named: map[string]any{"content": ""}, kind: status.KindModuleError, msg: "directory " + filepath.Join(dir, "no") + " does not exist"},
		{name: "directory", path: dir, named: map[string]any{"content": ""}, kind: status.KindModuleError, msg: "is a directory"},
		{name: "parent is a file", path: filepath.Join(f, "n"), named: map[string]any{"content": "", "mkdirs": true}, kind: status.KindModuleError, msg: "not a directory"},
		{name: "trailing slash", path: dir + "/", named: map[string]any{"content": ""}, kind: status.KindModuleError, msg: "not a file name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := call(t, "write", tt.named, tt.path)
			if err == nil || err.Kind != tt.kind || !strings.Contains(err.Message, tt.msg) {
				t.Errorf("error %v, want %s saying %q", err, tt.kind, tt.msg)
			}
			if _, err := os.Lstat(filepath.Join(dir, "n")); err == nil {
				t.Error("a failed write left a file")
			}
			if l := leftovers(t, dir); len(l) > 0 {
				t.Errorf("temporary files left: %v", l)
			}
		})
	}
}

func TestChecksum(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	writeFile(t, f, "hello", 0o644)
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, "", 0o644)
	tests := []struct {
		name  string
		named map[string]any
		path  string
		algo  string
		sum   string
		size  int64
	}{
		{name: "sha256 by default", path: f, algo: "sha256", sum: sha("hello"), size: 5},
		{name: "empty file", path: empty, algo: "sha256", sum: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{name: "md5", path: f, named: map[string]any{"algo": "md5"}, algo: "md5", sum: "5d41402abc4b2a76b9719d911017c592", size: 5},
		{name: "sha1", path: f, named: map[string]any{"algo": "SHA1"}, algo: "sha1", sum: "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d", size: 5},
		{name: "sha512", path: f, named: map[string]any{"algo": "sha512"}, algo: "sha512",
			sum: "9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca72323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043", size: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustCall[map[string]any](t, "checksum", tt.named, tt.path)
			if got[tt.algo] != tt.sum || got["algo"] != tt.algo || got["size"] != tt.size || got["path"] != tt.path {
				t.Errorf("got %v; want %s %s size %d", got, tt.algo, tt.sum, tt.size)
			}
		})
	}
	for _, tt := range []struct {
		name  string
		named map[string]any
		path  string
		kind  status.Kind
		msg   string
	}{
		{name: "unknown algo", path: f, named: map[string]any{"algo": "crc32"}, kind: status.KindBadArgs, msg: "parameter algo"},
		{name: "relative", path: "f", kind: status.KindBadArgs, msg: "absolute path"},
		{name: "directory", path: dir, kind: status.KindModuleError, msg: "not a regular file"},
		{name: "missing", path: filepath.Join(dir, "nope"), kind: status.KindModuleError, msg: "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := call(t, "checksum", tt.named, tt.path)
			if err == nil || err.Kind != tt.kind || !strings.Contains(err.Message, tt.msg) {
				t.Errorf("error %v, want %s saying %q", err, tt.kind, tt.msg)
			}
		})
	}
	if _, err := file.Checksum(dir); err == nil {
		t.Error("Checksum of a directory did not fail")
	}
}

func TestList(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "b.txt"), "bb", 0o600)
	writeFile(t, filepath.Join(dir, "a.txt"), "a", 0o644)
	if err := os.Mkdir(filepath.Join(dir, "c"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("nowhere", filepath.Join(dir, "d")); err != nil {
		t.Fatal(err)
	}
	l := mustCall[file.List](t, "list", nil, dir)
	want := []file.Entry{
		{Name: "a.txt", Type: "file", Size: 1, Mode: "0644"},
		{Name: "b.txt", Type: "file", Size: 2, Mode: "0600"},
		{Name: "c", Type: "dir", Mode: "0755"},
		{Name: "d", Type: "symlink", Size: 7, Mode: "0777"},
	}
	if l.Path != dir || l.Total != 4 || l.Truncated || len(l.Entries) != len(want) {
		t.Fatalf("got %+v", l)
	}
	for i, e := range l.Entries {
		w := want[i]
		if e.Name != w.Name || e.Type != w.Type || (e.Type != "dir" && e.Size != w.Size) || e.Mode != w.Mode || e.MTime.IsZero() || e.Error != "" {
			t.Errorf("entry %d = %+v, want %+v", i, e, w)
		}
	}

	l = mustCall[file.List](t, "list", map[string]any{"max_entries": 2.0}, dir)
	if len(l.Entries) != 2 || l.Entries[0].Name != "a.txt" || l.Entries[1].Name != "b.txt" || !l.Truncated || l.Total != 4 {
		t.Errorf("max_entries 2: %+v", l)
	}

	empty := t.TempDir()
	l = mustCall[file.List](t, "list", nil, empty)
	if data, _ := json.Marshal(l); !strings.Contains(string(data), `"entries":[]`) {
		t.Errorf("empty directory: %s, want an empty entries list", data)
	}
}

// A directory larger than the cap gives the first names in order, while
// list keeps only about twice the cap in memory.
func TestListLargeDirectory(t *testing.T) {
	dir := t.TempDir()
	const n = 3000
	for i := range n {
		// Created in an order unlike the sorted one.
		name := strconv.Itoa((i*7919)%n + 10000)
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	l := mustCall[file.List](t, "list", map[string]any{"max_entries": 10.0}, dir)
	if l.Total != n || !l.Truncated || len(l.Entries) != 10 {
		t.Fatalf("total %d truncated %v entries %d", l.Total, l.Truncated, len(l.Entries))
	}
	for i, e := range l.Entries {
		if want := strconv.Itoa(10000 + i); e.Name != want {
			t.Errorf("entry %d is %s, want %s", i, e.Name, want)
		}
	}
}

func TestListFailures(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	writeFile(t, f, "", 0o644)
	for _, tt := range []struct {
		name  string
		named map[string]any
		path  string
		kind  status.Kind
		msg   string
	}{
		{name: "not a directory", path: f, kind: status.KindModuleError, msg: "is not a directory"},
		{name: "missing", path: filepath.Join(dir, "nope"), kind: status.KindModuleError, msg: "no such file"},
		{name: "relative", path: ".", kind: status.KindBadArgs, msg: "absolute path"},
		{name: "max_entries over the cap", path: dir, named: map[string]any{"max_entries": 1e6}, kind: status.KindBadArgs, msg: "max_entries: must be between 1 and 100000"},
		{name: "negative max_entries", path: dir, named: map[string]any{"max_entries": -1.0}, kind: status.KindBadArgs, msg: "max_entries"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := call(t, "list", tt.named, tt.path)
			if err == nil || err.Kind != tt.kind || !strings.Contains(err.Message, tt.msg) {
				t.Errorf("error %v, want %s saying %q", err, tt.kind, tt.msg)
			}
		})
	}
}

func TestExists(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	writeFile(t, f, "", 0o644)
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink("nowhere", dangling); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		path string
		want bool
	}{
		{"file", f, true},
		{"directory", dir, true},
		{"dangling symlink", dangling, true},
		{"missing", filepath.Join(dir, "nope"), false},
		{"under a file", filepath.Join(f, "x"), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustCall[bool](t, "exists", nil, tt.path); got != tt.want {
				t.Errorf("exists = %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := call(t, "exists", nil, "relative"); err == nil || err.Kind != status.KindBadArgs {
		t.Errorf("relative path: %v, want bad_args", err)
	}
}
