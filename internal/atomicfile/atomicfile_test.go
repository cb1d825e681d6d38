package atomicfile

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func writeOld(t *testing.T, path, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// leftovers returns the names in dir that look like temporary files.
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

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

// errReader yields some data and then fails.
type errReader struct{ n int }

func (r *errReader) Read(p []byte) (int, error) {
	if r.n > 0 {
		m := min(r.n, len(p))
		r.n -= m
		return m, nil
	}
	return 0, errors.New("connection lost")
}

func TestWrite(t *testing.T) {
	const content = "the new content\n"
	tests := []struct {
		name    string
		old     string // "" for no file before
		r       func() io.Reader
		mode    fs.FileMode
		want    string // the expected sha256
		err     string
		mismtch bool
	}{
		{name: "verified", r: func() io.Reader { return strings.NewReader(content) }, mode: 0o640, want: sha(content)},
		{name: "upper-case sum", r: func() io.Reader { return strings.NewReader(content) }, mode: 0o640, want: strings.ToUpper(sha(content))},
		{name: "no sum to check", r: func() io.Reader { return strings.NewReader(content) }, mode: 0o640},
		{name: "setuid past the umask", r: func() io.Reader { return strings.NewReader(content) }, mode: 0o777 | fs.ModeSetuid},
		{name: "replace verified", old: "old", r: func() io.Reader { return strings.NewReader(content) }, mode: 0o600, want: sha(content)},
		{name: "mismatch on a new file", r: func() io.Reader { return strings.NewReader(content) }, mode: 0o640, want: sha("other"), err: "sha256 mismatch", mismtch: true},
		{name: "mismatch keeps the old file", old: "old", r: func() io.Reader { return strings.NewReader(content) }, mode: 0o640, want: sha("other"), err: "sha256 mismatch", mismtch: true},
		{name: "reader fails", old: "old", r: func() io.Reader { return &errReader{n: 100000} }, mode: 0o640, err: "connection lost"},
		{name: "malformed sum", old: "old", r: func() io.Reader { return strings.NewReader(content) }, mode: 0o640, want: "abc", err: "not 64 hex digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "target")
			if tt.old != "" {
				writeOld(t, path, tt.old, 0o644)
			}
			n, sum, err := Write(path, tt.r(), Options{Mode: tt.mode, SHA256: tt.want})
			if l := leftovers(t, dir); len(l) > 0 {
				t.Errorf("temporary files left: %v", l)
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one saying %q", err, tt.err)
				}
				if errors.Is(err, ErrChecksumMismatch) != tt.mismtch {
					t.Errorf("errors.Is(%v, ErrChecksumMismatch) = %v", err, !tt.mismtch)
				}
				data, rerr := os.ReadFile(path)
				switch {
				case tt.old == "" && !os.IsNotExist(rerr):
					t.Errorf("target exists after a failed write (%q, %v)", data, rerr)
				case tt.old != "" && string(data) != tt.old:
					t.Errorf("target holds %q after a failed write, want %q", data, tt.old)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(content)) || sum != sha(content) {
				t.Errorf("n %d sum %s; want %d %s", n, sum, len(content), sha(content))
			}
			if m := mode(t, path); m != tt.mode {
				t.Errorf("mode %s, want %s", m, tt.mode)
			}
			if data, _ := os.ReadFile(path); string(data) != content {
				t.Errorf("target holds %q, want %q", data, content)
			}
		})
	}
}

// KeepMode keeps a replaced file's mode; Mode is for a new file.
func TestKeepMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	o := Options{Mode: 0o644, KeepMode: true}
	if err := WriteFile(path, []byte("a"), o); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, path); m != 0o644 {
		t.Errorf("new file mode %s, want 0644", m)
	}
	if err := os.Chmod(path, 0o751|fs.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("b"), o); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, path); m != 0o751|fs.ModeSetgid {
		t.Errorf("replaced file mode %s, want 0751 and setgid kept", m)
	}
}

// KeepOwner keeps a replaced file's owner; without it the writer owns the
// new file.
func TestKeepOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file away")
	}
	for _, keep := range []bool{true, false} {
		path := filepath.Join(t.TempDir(), "f")
		writeOld(t, path, "old", 0o644)
		if err := os.Chown(path, 4321, 4322); err != nil {
			t.Fatal(err)
		}
		if err := WriteFile(path, []byte("new"), Options{Mode: 0o644, KeepOwner: keep}); err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(path)
		st := fi.Sys().(*syscall.Stat_t)
		want := uint32(0)
		if keep {
			want = 4321
		}
		if st.Uid != want || keep && st.Gid != 4322 {
			t.Errorf("KeepOwner %v: owner %d:%d, want %d", keep, st.Uid, st.Gid, want)
		}
	}
}

// Umask creates the file with Mode and lets the umask make it stricter.
func TestUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	if err := WriteFile(filepath.Join(dir, "u"), []byte("x"), Options{Mode: 0o644, Umask: true}); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, filepath.Join(dir, "u")); m != 0o600 {
		t.Errorf("with Umask: mode %s, want 0600", m)
	}
	if err := WriteFile(filepath.Join(dir, "m"), []byte("x"), Options{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, filepath.Join(dir, "m")); m != 0o644 {
		t.Errorf("without Umask: mode %s, want 0644", m)
	}
}

// The directory is synced after the rename, and a failure to sync it is
// ErrDirNotSynced with the file in place; NoSync skips it.
func TestSyncDir(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	var synced []string
	o := Options{Mode: 0o600, syncDir: func(d *os.File) error {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("directory synced before the file was in place: %v", err)
		}
		synced = append(synced, d.Name())
		return d.Sync()
	}}
	if err := WriteFile(path, []byte("a"), o); err != nil {
		t.Fatal(err)
	}
	if len(synced) != 1 || synced[0] != dir {
		t.Errorf("synced %q, want %q once", synced, dir)
	}

	o.NoSync, synced = true, nil
	if err := WriteFile(path, []byte("b"), o); err != nil || len(synced) != 0 {
		t.Errorf("NoSync: %v, synced %q; want no sync", err, synced)
	}

	o.NoSync = false
	o.syncDir = func(*os.File) error { return syscall.EIO }
	err := WriteFile(path, []byte("c"), o)
	if !errors.Is(err, ErrDirNotSynced) {
		t.Errorf("error %v, want ErrDirNotSynced", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "c" {
		t.Errorf("after ErrDirNotSynced the file holds %q, want c in place", data)
	}
	o.syncDir = func(*os.File) error { return syscall.EINVAL }
	if err := WriteFile(path, []byte("d"), o); err != nil {
		t.Errorf("EINVAL (a file system that cannot sync directories): %v, want nil", err)
	}
}

// Until Commit, the target holds the old content; the temporary file is
// gone after Commit or Abort.
func TestNoPartialFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	writeOld(t, path, "old", 0o644)
	for _, commit := range []bool{false, true} {
		f, err := Create(path, Options{Mode: 0o644})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("half of the ")); err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(path); string(data) != "old" {
			t.Errorf("while writing the target holds %q, want old", data)
		}
		if l := leftovers(t, dir); len(l) != 1 || filepath.Join(dir, l[0]) != f.Name() {
			t.Errorf("temporary files %v, want %s", l, f.Name())
		}
		if !commit {
			f.Abort()
			f.Abort() // harmless
			if data, _ := os.ReadFile(path); string(data) != "old" {
				t.Errorf("after Abort the target holds %q, want old", data)
			}
		} else {
			f.Write([]byte("new content"))
			if err := f.Commit(); err != nil {
				t.Fatal(err)
			}
			if data, _ := os.ReadFile(path); string(data) != "half of the new content" {
				t.Errorf("after Commit the target holds %q", data)
			}
			if f.Size() != 23 || f.SHA256() != sha("half of the new content") {
				t.Errorf("Size %d SHA256 %s", f.Size(), f.SHA256())
			}
			if err := f.Commit(); err == nil {
				t.Error("a second Commit succeeded")
			}
		}
		if l := leftovers(t, dir); len(l) > 0 {
			t.Errorf("temporary files left: %v", l)
		}
	}
}

// Readers of a file being rewritten see the old content or the new, never
// a mix or an empty file.
func TestAtomicForReaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	a, b := strings.Repeat("a", 64<<10), strings.Repeat("b", 64<<10)
	writeOld(t, path, a, 0o644)
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			content := a
			if i%2 == 1 {
				content = b
			}
			if err := WriteFile(path, []byte(content), Options{Mode: 0o644, NoSync: true}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 200 {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Error(err)
			break
		}
		if s := string(data); s != a && s != b {
			t.Errorf("read %d bytes that are neither version", len(data))
			break
		}
	}
	close(done)
	wg.Wait()
}

func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	if err := WriteFile(dir, []byte("x"), Options{Mode: 0o600}); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("over a directory: %v", err)
	}
	if err := WriteFile(filepath.Join(dir, "no/such/f"), []byte("x"), Options{Mode: 0o600}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("in a missing directory: %v, want fs.ErrNotExist", err)
	}
	for _, p := range []string{dir + "/", dir + "/.", dir + "/.."} {
		if err := WriteFile(p, []byte("x"), Options{Mode: 0o600}); err == nil {
			t.Errorf("%s: no error", p)
		}
	}
	if l := leftovers(t, dir); len(l) > 0 {
		t.Errorf("temporary files left: %v", l)
	}
}

// NoReplace refuses an existing file at Create, and at Commit one that
// appeared meanwhile, leaving it as it is.
func TestNoReplace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	o := Options{Mode: 0o600, NoReplace: true}
	if err := WriteFile(path, []byte("first"), o); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("second"), o); !errors.Is(err, fs.ErrExist) {
		t.Errorf("over an existing file: %v, want fs.ErrExist", err)
	}
	race := filepath.Join(dir, "race")
	f, err := Create(race, o)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("mine"))
	writeOld(t, race, "theirs", 0o644)
	if err := f.Commit(); !errors.Is(err, fs.ErrExist) {
		t.Errorf("a file made meanwhile: %v, want fs.ErrExist", err)
	}
	for name, want := range map[string]string{path: "first", race: "theirs"} {
		if data, _ := os.ReadFile(name); string(data) != want {
			t.Errorf("%s holds %q, want %q", name, data, want)
		}
	}
	if l := leftovers(t, dir); len(l) > 0 {
		t.Errorf("temporary files left: %v", l)
	}
}

// Reuse writes over an existing file's blocks, cuts it to size and
// renames it into place.
func TestReuse(t *testing.T) {
	dir := t.TempDir()
	reserve, path := filepath.Join(dir, "reserve"), filepath.Join(dir, "result")
	writeOld(t, reserve, strings.Repeat(" ", 4096), 0o600)
	before, _ := os.Stat(reserve)
	if err := WriteFile(path, []byte("result"), Options{Mode: 0o600, Reuse: reserve}); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); string(data) != "result" || !os.SameFile(before, after) {
		t.Errorf("result holds %q, same file as the reserve %v", data, os.SameFile(before, after))
	}
	if _, err := os.Stat(reserve); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("reserve still there: %v", err)
	}
}

// With a Root every name stays inside it.
func TestRoot(t *testing.T) {
	dir := t.TempDir()
	inner := filepath.Join(dir, "inner")
	if err := os.Mkdir(inner, 0o700); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(inner)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var synced string
	o := Options{Mode: 0o600, Root: root, syncDir: func(d *os.File) error { synced = d.Name(); return d.Sync() }}
	if err := WriteFile("a.json", []byte("{}"), o); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(inner, "a.json")); string(data) != "{}" || synced == "" {
		t.Errorf("a.json holds %q, directory synced %q", data, synced)
	}
	if err := os.Symlink(dir, filepath.Join(inner, "out")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"../escape", "out/escape"} {
		if err := WriteFile(name, []byte("x"), o); err == nil {
			t.Errorf("%s: written outside the root", name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "escape")); err == nil {
		t.Error("a file was written outside the root")
	}
	if l := leftovers(t, inner); len(l) > 0 {
		t.Errorf("temporary files left: %v", l)
	}
}

// CommitOpen hands back the file still open: a lock taken before it had
// its name is still held.
func TestCommitOpenKeepsLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	f, err := Create(path, Options{Mode: 0o600, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	held, err := f.CommitOpen()
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	other, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := syscall.Flock(int(other.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Errorf("flock of the committed file: %v, want EWOULDBLOCK (held)", err)
	}
}
