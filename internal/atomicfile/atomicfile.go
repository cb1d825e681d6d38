// Package atomicfile is the one way this project writes a file whole:
// the data goes to a temporary file in the target's directory, which is
// synced, given its mode (and owner, when asked), and renamed over the
// target; then the directory is synced. A reader sees the old file or
// the new one, never a part of either, and the new one survives a crash
// once written.
//
// WriteFile and Write write a file at once; Create returns a File for a
// writer that streams it over many calls (overlord cp's chunks on the
// minion, fetch's on the overlord) and learns its mode or checksum late.
// Options say what differs between callers: the mode and whether the
// replaced file's mode or owner is kept, whether the umask applies,
// refusing to replace a file, reusing a file's blocks, skipping the
// syncs, and confinement to an os.Root.
package atomicfile

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// ErrChecksumMismatch is returned, wrapped, when the data written does not
// have the sha256 Options.SHA256 expects. Nothing is left behind: the
// target is untouched and the temporary file removed.
var ErrChecksumMismatch = errors.New("sha256 mismatch")

// ErrDirNotSynced is returned, wrapped, when the file is in place but
// syncing its directory failed: the file may not survive a crash. A
// caller for which the rename is enough may ignore it.
var ErrDirNotSynced = errors.New("written, but syncing its directory failed")

// Options say how a file is written. The zero value writes mode 0 files:
// callers set Mode.
type Options struct {
	// Mode is the new file's mode: its permission bits, setuid, setgid
	// and sticky, applied as they are, whatever the umask (unless Umask).
	Mode fs.FileMode
	// KeepMode keeps the mode of the regular file being replaced; Mode
	// is then only for a new file.
	KeepMode bool
	// KeepOwner keeps the owner and group of the regular file being
	// replaced where the process may set them (a user who is not root
	// may not give files away, and then the file becomes theirs).
	KeepOwner bool
	// Umask creates the file with Mode's permission bits and lets the
	// umask apply, which can only make them stricter; the mode is not set
	// afterwards.
	Umask bool
	// NoReplace refuses to replace an existing file: fs.ErrExist,
	// checked when the file is created and again, atomically, when it is
	// put in place (a hard link, not a rename).
	NoReplace bool
	// NoSync skips syncing the file and its directory: readers still see
	// the whole file or none, but a crash may lose it. For files nobody
	// relies on across a crash (a lock file, command output).
	NoSync bool
	// Reuse names an existing file in the target's directory that is
	// written over in place instead of a new temporary file, so the
	// write needs no new space where the data fits in its blocks. It is
	// cut to size and renamed into place; on failure it is removed.
	Reuse string
	// SHA256, if set (hex, any case), is the sha256 the data must have:
	// Commit fails with ErrChecksumMismatch otherwise.
	SHA256 string
	// Root, if set, confines every operation to it: the path is relative
	// to it and cannot lead out of it.
	Root *os.Root

	// syncDir syncs the opened directory; tests replace it.
	syncDir func(*os.File) error
}

// fsys is what a File does to the file system: the os functions, or an
// os.Root's methods of the same names.
type fsys interface {
	OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error)
	Open(name string) (*os.File, error)
	Lstat(name string) (fs.FileInfo, error)
	Rename(oldname, newname string) error
	Link(oldname, newname string) error
	Remove(name string) error
}

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	return os.OpenFile(name, flag, perm)
}
func (osFS) Open(name string) (*os.File, error)     { return os.Open(name) }
func (osFS) Lstat(name string) (fs.FileInfo, error) { return os.Lstat(name) }
func (osFS) Rename(oldname, newname string) error   { return os.Rename(oldname, newname) }
func (osFS) Link(oldname, newname string) error     { return os.Link(oldname, newname) }
func (osFS) Remove(name string) error               { return os.Remove(name) }

var (
	_ fsys = osFS{}
	_ fsys = (*os.Root)(nil)
)

// File is a file being written: a temporary file until Commit puts it in
// place. Either Commit or Abort must be called.
type File struct {
	path, dir, tmp string
	o              Options
	fs             fsys
	f              *os.File
	h              hash.Hash
	n              int64
	mode           fs.FileMode
	uid, gid       int
	done           bool
}

// Create starts writing path: it checks what is there (a directory is an
// error, and so is any file with NoReplace), notes the mode and owner to
// keep, and creates the temporary file (or opens Options.Reuse). A
// symlink at path is replaced, not followed.
func Create(path string, o Options) (*File, error) {
	if o.SHA256 != "" && !isHexSHA256(o.SHA256) {
		return nil, fmt.Errorf("write %s: expected sha256 %q is not 64 hex digits", path, o.SHA256)
	}
	dir, base, err := Split(path)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	var fsys fsys = osFS{}
	if o.Root != nil {
		fsys = o.Root
	}
	a := &File{path: path, dir: dir, o: o, fs: fsys, h: sha256.New(), mode: o.Mode, uid: -1, gid: -1}
	switch old, err := fsys.Lstat(path); {
	case err == nil && old.IsDir():
		return nil, fmt.Errorf("write %s: is a directory", path)
	case err == nil && o.NoReplace:
		return nil, fmt.Errorf("write %s: %w", path, fs.ErrExist)
	case err == nil && old.Mode().IsRegular():
		if o.KeepMode {
			a.mode = old.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		}
		if st, ok := old.Sys().(*syscall.Stat_t); ok && o.KeepOwner {
			a.uid, a.gid = int(st.Uid), int(st.Gid)
		}
	case err == nil || errors.Is(err, fs.ErrNotExist):
	default:
		return nil, fmt.Errorf("write %s: %w", path, err)
	}

	if o.Reuse != "" {
		if a.f, err = fsys.OpenFile(o.Reuse, os.O_WRONLY, 0); err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
		a.tmp = o.Reuse
		return a, nil
	}
	perm := fs.FileMode(0o600)
	if o.Umask {
		perm = o.Mode.Perm()
	}
	// A long base name would make the temporary name too long.
	if len(base) > 128 {
		base = base[:128]
	}
	for range 100 {
		var rnd [6]byte
		_, _ = rand.Read(rnd[:])
		a.tmp = join(dir, "."+base+".tmp-"+hex.EncodeToString(rnd[:]))
		a.f, err = fsys.OpenFile(a.tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("write %s: directory %s does not exist: %w", path, dir, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return a, nil
}

// Write writes p to the temporary file.
func (a *File) Write(p []byte) (int, error) {
	if a.done {
		return 0, fmt.Errorf("write %s: %w", a.path, os.ErrClosed)
	}
	n, err := a.f.Write(p)
	a.h.Write(p[:n])
	a.n += int64(n)
	return n, err
}

// Size returns the number of bytes written so far.
func (a *File) Size() int64 { return a.n }

// SHA256 returns the sha256 of the bytes written so far, in hex.
func (a *File) SHA256() string { return hex.EncodeToString(a.h.Sum(nil)) }

// Fd returns the temporary file's descriptor, to lock it before it is
// put in place.
func (a *File) Fd() uintptr { return a.f.Fd() }

// Name returns the temporary file's name.
func (a *File) Name() string { return a.tmp }

// SetMode sets the mode Commit gives the file, for a writer that learns
// it only after Create.
func (a *File) SetMode(mode fs.FileMode) { a.mode = mode }

// Abort closes and removes the temporary file (the Reuse file too). It
// is harmless after Commit or Abort.
func (a *File) Abort() {
	if a.done {
		return
	}
	a.done = true
	a.f.Close()
	_ = a.fs.Remove(a.tmp)
}

// Commit checks the sha256 if one is expected, sets the owner and mode,
// syncs and closes the temporary file, puts it in place and syncs the
// directory. On any error but ErrDirNotSynced the target is untouched
// and the temporary file removed.
func (a *File) Commit() error {
	_, err := a.commit(false)
	return err
}

// CommitOpen is Commit that hands the file back still open, so a lock
// taken on it before it had its name is held on: the caller closes it.
// With ErrDirNotSynced it returns the file too.
func (a *File) CommitOpen() (*os.File, error) {
	return a.commit(true)
}

func (a *File) commit(keepOpen bool) (*os.File, error) {
	if a.done {
		return nil, fmt.Errorf("write %s: %w", a.path, os.ErrClosed)
	}
	a.done = true
	if err := a.place(keepOpen); err != nil {
		return nil, fmt.Errorf("write %s: %w", a.path, err)
	}
	var f *os.File
	if keepOpen {
		f = a.f
	}
	// The file is in place: from here an error only says that it may
	// not survive a crash.
	if !a.o.NoSync {
		if err := a.syncDir(); err != nil {
			return f, fmt.Errorf("write %s: %w: %v", a.path, ErrDirNotSynced, err)
		}
	}
	return f, nil
}

// place checks, finishes and puts the temporary file in place; on
// failure it closes and removes it.
func (a *File) place(keepOpen bool) (err error) {
	closed := false
	defer func() {
		if err != nil {
			if !closed {
				a.f.Close()
			}
			_ = a.fs.Remove(a.tmp)
		}
	}()
	if want := strings.ToLower(a.o.SHA256); want != "" {
		if got := a.SHA256(); got != want {
			return fmt.Errorf("%w: got %s, want %s", ErrChecksumMismatch, got, want)
		}
	}
	if a.o.Reuse != "" {
		if err := a.f.Truncate(a.n); err != nil {
			return err
		}
	}
	if a.uid >= 0 {
		if err := a.f.Chown(a.uid, a.gid); err != nil && !errors.Is(err, syscall.EPERM) {
			return err
		}
	}
	if !a.o.Umask {
		// After Chown, which may clear setuid and setgid.
		if err := a.f.Chmod(a.mode); err != nil {
			return err
		}
	}
	if !a.o.NoSync {
		if err := a.f.Sync(); err != nil {
			return err
		}
	}
	if !keepOpen {
		closed = true
		if err := a.f.Close(); err != nil {
			return err
		}
	}
	if !a.o.NoReplace {
		return a.fs.Rename(a.tmp, a.path)
	}
	// A link fails if path exists, where a rename would replace it.
	if err := a.fs.Link(a.tmp, a.path); err != nil {
		return err
	}
	_ = a.fs.Remove(a.tmp)
	return nil
}

func (a *File) syncDir() error {
	d, err := a.fs.Open(a.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	sync := a.o.syncDir
	if sync == nil {
		sync = (*os.File).Sync
	}
	if err := sync(d); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err // EINVAL: the file system cannot sync directories
	}
	return nil
}

// Write writes what r yields to path (see File) and returns the number of
// bytes written and their sha256 in hex.
func Write(path string, r io.Reader, o Options) (n int64, sum string, err error) {
	a, err := Create(path, o)
	if err != nil {
		return 0, "", err
	}
	if _, err := io.Copy(a, r); err != nil {
		a.Abort()
		return 0, "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := a.Commit(); err != nil && !errors.Is(err, ErrDirNotSynced) {
		return 0, "", err
	} else {
		return a.n, a.SHA256(), err // the file is in place
	}
}

// WriteFile writes data to path (see File).
func WriteFile(path string, data []byte, o Options) error {
	a, err := Create(path, o)
	if err != nil {
		return err
	}
	if _, err := a.Write(data); err != nil {
		a.Abort()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return a.Commit()
}

// Split returns the directory and the base name of path without cleaning
// it, so that "a/link/../b" keeps its directory "a/link/..", which is
// where the kernel will put b.
func Split(path string) (dir, base string, err error) {
	i := strings.LastIndexByte(path, '/')
	switch {
	case i < 0:
		dir, base = ".", path
	case i == 0:
		dir, base = "/", path[1:]
	default:
		dir, base = path[:i], path[i+1:]
	}
	if base == "" || base == "." || base == ".." {
		return "", "", errors.New("not a file name")
	}
	return dir, base, nil
}

// join puts name in dir without cleaning dir (see Split).
func join(dir, name string) string {
	if strings.HasSuffix(dir, "/") {
		return dir + name
	}
	return dir + "/" + name
}

func isHexSHA256(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
