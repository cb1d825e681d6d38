package plugin

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// maxLinks is how many symlinks a lookup follows, as the kernel does.
const maxLinks = 40

// target is a plugin file resolved, checked and open: what runs.
type target struct {
	path string   // in modules.d, as the plugin is named
	real string   // what path resolved to
	f    *os.File // the file at real, opened O_PATH
	key  fileKey  // the open file's identity, from fstat
}

func (t *target) Close() error { return t.f.Close() }

// open resolves the plugin at path (in the directory), checks every
// directory the lookup looked in, every symlink it followed and the file
// it reached, and opens that file: the returned target is what may run.
// The directory itself must pass the same checks.
func (d *Dir) open(path string) (*target, error) {
	abs, err := filepath.Abs(d.Path)
	if err != nil {
		return nil, err
	}
	rootFI, err := os.Lstat("/")
	if err != nil {
		return nil, err
	}
	dir, dirFI, err := d.resolve("/", rootFI, abs, "directory")
	if err != nil {
		return nil, err
	}
	// The plugin is looked up from where the directory led.
	real, fi, err := d.resolve(dir, dirFI, filepath.Base(path), "plugin")
	if err != nil {
		return nil, err
	}
	fd, err := syscall.Open(real, oPath|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open plugin %s: %w", real, err)
	}
	f := os.NewFile(uintptr(fd), real)
	ofi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("plugin %s: %w", real, err)
	}
	// What was opened is what was checked, and is checked itself.
	if !os.SameFile(fi, ofi) {
		f.Close()
		return nil, fmt.Errorf("plugin %s changed while it was checked; refusing to run it", real)
	}
	if err := d.checkFile(real, ofi); err != nil {
		f.Close()
		return nil, err
	}
	return &target{path: path, real: real, f: f, key: keyOf(ofi)}, nil
}

// resolve follows path from directory start (of FileInfo startFI,
// already checked) to the file it names as the kernel would, and
// checks on the way that only root and the minion's user could have
// changed where it leads: every directory it looks an entry up in must be
// owned by one of them and not writable by group or others, unless it is
// sticky (like /tmp) and the entry is owned by one of them (then no one
// else may rename or delete it). The file reached is checked as what (a
// "plugin" file or the plugins' "directory"). It returns the path with
// no symlinks left, and the file's Lstat.
func (d *Dir) resolve(start string, startFI fs.FileInfo, path, what string) (string, fs.FileInfo, error) {
	var err error
	var rootFI fs.FileInfo
	cur, curFI := start, startFI
	rest := strings.Split(path, "/")
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if cur != "/" {
				cur = filepath.Dir(cur)
				if curFI, err = os.Lstat(cur); err != nil {
					return "", nil, err
				}
			}
			continue
		}
		next := filepath.Join(cur, c)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", nil, err
		}
		if err := d.lookedUpIn(cur, curFI, fi); err != nil {
			return "", nil, err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if links++; links > maxLinks {
				return "", nil, fmt.Errorf("%s: too many levels of symbolic links", path)
			}
			link, err := os.Readlink(next)
			if err != nil {
				return "", nil, err
			}
			if strings.HasPrefix(link, "/") {
				if rootFI == nil {
					if rootFI, err = os.Lstat("/"); err != nil {
						return "", nil, err
					}
				}
				cur, curFI = "/", rootFI
			}
			rest = append(strings.Split(link, "/"), rest...)
			continue
		}
		cur, curFI = next, fi
		if !fi.IsDir() && hasMore(rest) {
			return "", nil, fmt.Errorf("%s: %s is not a directory", path, next)
		}
	}
	if what == "directory" {
		if !curFI.IsDir() {
			return "", nil, fmt.Errorf("plugin directory %s is not a directory", cur)
		}
		return cur, curFI, d.trusted(cur, what, curFI)
	}
	return cur, curFI, d.checkFile(cur, curFI)
}

// hasMore reports whether components name anything (not just "" or ".").
func hasMore(components []string) bool {
	for _, c := range components {
		if c != "" && c != "." {
			return true
		}
	}
	return false
}

// lookedUpIn checks directory dir (of FileInfo dirFI), in which an entry
// of FileInfo entry was looked up: only root and the minion's user may be
// able to change the entry.
func (d *Dir) lookedUpIn(dir string, dirFI, entry fs.FileInfo) error {
	if err := d.owner(dir, "directory", dirFI); err != nil {
		return err
	}
	perm := dirFI.Mode().Perm()
	if perm&0o022 == 0 {
		return nil
	}
	if dirFI.Mode()&fs.ModeSticky != 0 && d.ownerOK(entry) {
		return nil // like /tmp: only the entry's owner (trusted) can replace it
	}
	return fmt.Errorf("directory %s has mode %04o, writable by group or others, so others can change what a plugin found through it runs; refusing to run it (chmod go-w %s)",
		dir, perm|stickyBits(dirFI), dir)
}

func stickyBits(fi fs.FileInfo) fs.FileMode {
	if fi.Mode()&fs.ModeSticky != 0 {
		return 0o1000
	}
	return 0
}

// checkFile returns why the plugin at path may not run, or nil.
func (d *Dir) checkFile(path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file; refusing to run it", path)
	}
	return d.trusted(path, "plugin", fi)
}

// trusted checks that only root or the minion's user can change what fi
// describes.
func (d *Dir) trusted(path, what string, fi fs.FileInfo) error {
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%s %s has mode %04o, writable by group or others; refusing to run it (chmod go-w %s)", what, path, perm, path)
	}
	return d.owner(path, what, fi)
}

// owner checks that fi is owned by root or the minion's user.
func (d *Dir) owner(path, what string, fi fs.FileInfo) error {
	if !d.ownerOK(fi) {
		return fmt.Errorf("%s %s is owned by uid %d, not root or the minion's user (uid %d); refusing to run it", what, path, uidOf(fi), d.uid())
	}
	return nil
}

func (d *Dir) ownerOK(fi fs.FileInfo) bool {
	uid := uidOf(fi)
	return uid == 0 || uid == d.uid()
}

// uidOf returns fi's owner; -1 if fi does not say.
func uidOf(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

func (d *Dir) uid() int {
	if d.UID != nil {
		return *d.UID
	}
	return os.Geteuid()
}
