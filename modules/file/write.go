package file

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// ErrChecksumMismatch is returned, wrapped, by WriteAtomic when the data
// written does not have the sha256 the caller expected. Nothing is left
// behind: the target is untouched and the temporary file removed.
var ErrChecksumMismatch = errors.New("sha256 mismatch")

// WriteAtomic writes what r yields to path through a temporary file in the
// same directory: it copies, syncs, checks the sha256 against wantSHA256
// (hex; empty skips the check), sets the mode, renames the temporary file
// over path and syncs the directory. It returns the number of bytes written
// and their sha256 in hex.
//
// mode's permission bits, setuid, setgid and sticky are applied as they
// are, regardless of the umask. A zero mode means: keep the mode of the
// regular file being replaced, or 0644 for a new file. A replaced regular
// file's owner and group are kept where the process may set them. A symlink
// at path is replaced, not followed; a directory at path is an error.
//
// On any error the target is untouched and the temporary file is removed.
func WriteAtomic(path string, r io.Reader, mode fs.FileMode, wantSHA256 string) (n int64, sum string, err error) {
	return writeAtomic(path, r, mode, mode == 0, wantSHA256)
}

func writeAtomic(path string, r io.Reader, mode fs.FileMode, keepMode bool, wantSHA256 string) (n int64, sum string, err error) {
	want := strings.ToLower(wantSHA256)
	if want != "" && !isHexSHA256(want) {
		return 0, "", fmt.Errorf("write %s: expected sha256 %q is not 64 hex digits", path, wantSHA256)
	}
	dir, base, err := split(path)
	if err != nil {
		return 0, "", fmt.Errorf("write %s: %w", path, err)
	}
	owner := -1
	group := -1
	switch old, err := os.Lstat(path); {
	case err == nil && old.IsDir():
		return 0, "", fmt.Errorf("write %s: is a directory", path)
	case err == nil && old.Mode().IsRegular():
		if keepMode {
			mode = old.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		}
		if st, ok := old.Sys().(*syscall.Stat_t); ok {
			owner, group = int(st.Uid), int(st.Gid)
		}
	case err == nil || os.IsNotExist(err):
		if keepMode {
			mode = 0o644
		}
	default:
		return 0, "", err
	}

	// A long base name would make the temporary name too long.
	tmpBase := base
	if len(tmpBase) > 128 {
		tmpBase = tmpBase[:128]
	}
	tmp, err := os.CreateTemp(dir, "."+tmpBase+".tmp-*")
	if errors.Is(err, fs.ErrNotExist) {
		return 0, "", fmt.Errorf("write %s: directory %s does not exist: %w", path, dir, fs.ErrNotExist)
	}
	if err != nil {
		return 0, "", fmt.Errorf("write %s: %w", path, err)
	}
	closed := false
	defer func() {
		if err != nil {
			if !closed {
				tmp.Close()
			}
			os.Remove(tmp.Name())
		}
	}()

	h := sha256.New()
	n, err = io.Copy(io.MultiWriter(tmp, h), r)
	if err != nil {
		return 0, "", fmt.Errorf("write %s: %w", path, err)
	}
	sum = hex.EncodeToString(h.Sum(nil))
	if want != "" && sum != want {
		return 0, "", fmt.Errorf("write %s: %w: got %s, want %s", path, ErrChecksumMismatch, sum, want)
	}
	if owner >= 0 {
		// Keep the replaced file's owner where we may; a user who is not
		// root may not give files away, and then the file becomes theirs.
		if err := tmp.Chown(owner, group); err != nil && !errors.Is(err, syscall.EPERM) {
			return 0, "", fmt.Errorf("write %s: %w", path, err)
		}
	}
	// After Chown, which may clear setuid and setgid.
	if err = tmp.Chmod(mode); err != nil {
		return 0, "", fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return 0, "", fmt.Errorf("write %s: %w", path, err)
	}
	closed = true
	if err = tmp.Close(); err != nil {
		return 0, "", fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return 0, "", fmt.Errorf("write %s: %w", path, err)
	}
	// The rename is done: from here the new file is in place, and an
	// error only says that it may not survive a crash.
	if err := syncDir(dir); err != nil {
		return n, sum, fmt.Errorf("write %s: written, but syncing its directory failed: %w", path, err)
	}
	return n, sum, nil
}

// split returns the directory and the base name of path without cleaning
// it, so that "a/link/../b" keeps its directory "a/link/..", which is where
// the kernel will put b.
func split(path string) (dir, base string, err error) {
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

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err // EINVAL: the file system cannot sync directories
	}
	return nil
}

func isHexSHA256(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
