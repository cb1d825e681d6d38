// Package sysctl is the sysctl module: read kernel parameters from
// /proc/sys (Linux), by their dotted names such as net.ipv4.ip_forward.
//
// A key's dots map to directories under /proc/sys. A component that itself
// contains dots, such as the interface eth0.100 in
// net.ipv4.conf.eth0.100.rp_filter, is found by trying the ways of
// splitting the key against what /proc/sys holds.
package sysctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/status"
)

// Bounds on what one call reads.
const (
	MaxValue     = 64 << 10 // bytes of one value; a longer value is unreadable
	DefaultLimit = 10000    // values list returns unless told otherwise
	MaxLimit     = 100000   // the largest limit list accepts
	MaxListBytes = 8 << 20  // bytes of values one list returns, in all
)

// maxKey bounds the length of a key or prefix.
const maxKey = 512

// procSys is the directory keys live under, relative to Module.FS.
const procSys = "proc/sys"

// binfmtMisc is a separate file system, often an automount, under
// /proc/sys: its entries are not kernel parameters, and listing them
// would mount it.
const binfmtMisc = procSys + "/fs/binfmt_misc"

// Module is the sysctl module.
type Module struct {
	// FS is the file system keys are read from, under proc/sys. Nil
	// means the real root, os.DirFS("/").
	FS fs.FS
}

var _ modules.Module = Module{}

// Name implements modules.Module.
func (Module) Name() string { return "sysctl" }

// Doc implements modules.Module.
func (Module) Doc() string { return "Read kernel parameters from /proc/sys (Linux)." }

// Methods implements modules.Module.
func (m Module) Methods() []*modules.Method {
	return []*modules.Method{
		{
			Name:    "get",
			Doc:     "Read one kernel parameter. An unknown or unreadable key is a module_error.",
			Returns: "the value as a string, without leading and trailing white space",
			Params: []modules.Param{
				{Name: "key", Type: modules.String, Required: true,
					Doc: "a dotted key such as net.ipv4.ip_forward (no '/' and no '..')"},
			},
			Positional: 1,
			Run:        m.get,
		},
		{
			Name: "list",
			Doc: "Read every kernel parameter under a prefix, in key order. Entries that cannot be read " +
				"(write-only, or refused) are skipped and counted. fs.binfmt_misc is left out unless the prefix names it.",
			Returns: "{values: {key: value}, skipped: number of unreadable entries, truncated: true if limit or the size cap stopped the listing}",
			Params: []modules.Param{
				{Name: "prefix", Type: modules.String, Default: "",
					Doc: "a key or a group of keys such as net.ipv4, matched on whole components; empty for all"},
				{Name: "limit", Type: modules.Int, Default: DefaultLimit,
					Doc: fmt.Sprintf("the most values to return, 1 to %d", MaxLimit)},
			},
			Positional: 1,
			Run:        m.list,
		},
	}
}

// List is what sysctl.list returns.
type List struct {
	Values    map[string]string `json:"values"`
	Skipped   int               `json:"skipped"`
	Truncated bool              `json:"truncated"`
}

func (m Module) fsys() fs.FS {
	if m.FS == nil {
		return os.DirFS("/")
	}
	return m.FS
}

func (m Module) get(_ context.Context, a modules.Args) (any, error) {
	key := a.String("key")
	if err := checkKey("get", "key", key); err != nil {
		return nil, err
	}
	fsys := m.fsys()
	path, fi, err := resolve(fsys, key)
	if err != nil {
		return nil, notFound(fsys, key, err)
	}
	if fi.IsDir() {
		return nil, status.Errorf(status.KindBadArgs, "get: parameter key: %s is a group of keys, not a key; try sysctl.list %s", key, key)
	}
	v, err := readValue(fsys, path, fi)
	if err != nil {
		return nil, status.Errorf(status.KindModuleError, "cannot read %s: %v", key, err)
	}
	return v, nil
}

func (m Module) list(ctx context.Context, a modules.Args) (any, error) {
	prefix, limit := a.String("prefix"), a.Int("limit")
	if prefix != "" {
		if err := checkKey("list", "prefix", prefix); err != nil {
			return nil, err
		}
	}
	if limit < 1 || limit > MaxLimit {
		return nil, status.Errorf(status.KindBadArgs, "list: parameter limit: must be 1 to %d, got %d", MaxLimit, limit)
	}
	fsys := m.fsys()
	root := procSys
	if prefix != "" {
		path, _, err := resolve(fsys, prefix)
		if err != nil {
			return nil, notFound(fsys, prefix, err)
		}
		root = path
	}

	res := List{Values: map[string]string{}}
	size := 0
	err := fs.WalkDir(fsys, root, func(path string, d fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil {
			if path == root {
				return err
			}
			res.Skipped++ // an unreadable directory or a vanished entry
			return nil
		}
		if d.IsDir() {
			if path == binfmtMisc && root != binfmtMisc {
				return fs.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			res.Skipped++
			return nil
		}
		v, err := readValue(fsys, path, fi)
		if err != nil {
			res.Skipped++
			return nil
		}
		if len(res.Values) == int(limit) || size+len(v) > MaxListBytes {
			res.Truncated = true
			return fs.SkipAll
		}
		res.Values[keyOf(path)] = v
		size += len(v)
		return nil
	})
	switch {
	case ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded):
		return res, status.Errorf(status.KindTimeout, "list stopped at the call's deadline after %d values", len(res.Values))
	case ctx.Err() != nil:
		return res, status.Errorf(status.KindCancelled, "list cancelled after %d values", len(res.Values))
	case err != nil:
		return nil, status.Errorf(status.KindModuleError, "cannot list /%s: %v", root, err)
	}
	return res, nil
}

// checkKey rejects keys that could name anything outside /proc/sys, or
// that no key looks like.
func checkKey(method, param, key string) error {
	bad := func(why string) error {
		return status.Errorf(status.KindBadArgs, "%s: parameter %s: %s", method, param, why)
	}
	switch {
	case key == "":
		return bad("empty key")
	case len(key) > maxKey:
		return bad(fmt.Sprintf("longer than %d bytes", maxKey))
	case strings.Contains(key, "/"):
		return bad(fmt.Sprintf("%q contains '/'; write keys with dots, such as net.ipv4.ip_forward", key))
	case strings.Contains(key, ".."):
		return bad(fmt.Sprintf("%q contains '..'", key))
	case strings.HasPrefix(key, ".") || strings.HasSuffix(key, "."):
		return bad(fmt.Sprintf("%q starts or ends with '.'", key))
	}
	for _, r := range key {
		if r < ' ' || r == 0x7f {
			return bad(fmt.Sprintf("%q contains a control character", key))
		}
	}
	return nil
}

// resolve finds the file or directory under proc/sys that key names. Each
// dot is a directory separator, unless no entry matches that way and one
// with the dot in its name does (eth0.100).
func resolve(fsys fs.FS, key string) (string, fs.FileInfo, error) {
	parts := strings.Split(key, ".")
	var walk func(dir string, parts []string) (string, fs.FileInfo, error)
	walk = func(dir string, parts []string) (string, fs.FileInfo, error) {
		firstErr := error(nil)
		for n := 1; n <= len(parts); n++ {
			path := dir + "/" + strings.Join(parts[:n], ".")
			fi, err := fs.Stat(fsys, path)
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			if n == len(parts) {
				return path, fi, nil
			}
			if fi.IsDir() {
				if p, fi, err := walk(path, parts[n:]); err == nil {
					return p, fi, nil
				}
			}
		}
		if firstErr == nil {
			firstErr = fs.ErrNotExist
		}
		return "", nil, firstErr
	}
	return walk(procSys, parts)
}

// notFound explains why key was not found: no /proc/sys at all, or no such
// key in it.
func notFound(fsys fs.FS, key string, err error) error {
	if _, serr := fs.Stat(fsys, procSys); serr != nil {
		msg := fmt.Sprintf("cannot read /proc/sys: %v", serr)
		if runtime.GOOS != "linux" {
			msg += fmt.Sprintf(" (the sysctl module reads /proc/sys, which %s does not have)", runtime.GOOS)
		}
		return status.Errorf(status.KindModuleError, "%s", msg)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return status.Errorf(status.KindModuleError, "no sysctl key %s", key)
	}
	return status.Errorf(status.KindModuleError, "cannot look up %s: %v", key, err)
}

// readValue reads the value at path, of at most MaxValue bytes, trimmed.
func readValue(fsys fs.FS, path string, fi fs.FileInfo) (string, error) {
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	if fi.Mode().Perm()&0o444 == 0 {
		return "", errors.New("write-only")
	}
	f, err := fsys.Open(path)
	if err != nil {
		return "", bare(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxValue+1))
	if err != nil {
		return "", bare(err)
	}
	if len(data) > MaxValue {
		return "", fmt.Errorf("value longer than %d KiB", MaxValue>>10)
	}
	return strings.TrimSpace(string(data)), nil
}

// bare drops the path from a *fs.PathError: messages name the key.
func bare(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// keyOf turns a path under proc/sys into its dotted key.
func keyOf(path string) string {
	return strings.ReplaceAll(strings.TrimPrefix(path, procSys+"/"), "/", ".")
}
