// Package file is the file module: stat, read, write, checksum, list and
// exists on a minion's files, with every path absolute and every read
// bounded.
//
// Writes are atomic (internal/atomicfile): the data goes to a temporary
// file in the target's directory, is synced, and is renamed over the
// target, so a reader sees the old file or the new one and never a part
// of either.
package file

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/overlordhq/overlord/internal/atomicfile"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/status"
)

// Limits of read and list.
const (
	DefaultMaxRead    = 1 << 20  // read's default max_bytes
	MaxRead           = 16 << 20 // the largest max_bytes read accepts
	DefaultMaxEntries = 1000     // list's default max_entries
	MaxEntries        = 100000   // the largest max_entries list accepts
)

// File types as reported by stat and list.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
	TypeOther   = "other" // a device, FIFO or socket
)

// Module is the file module.
type Module struct{}

var _ modules.Module = Module{}

// Name implements modules.Module.
func (Module) Name() string { return "file" }

// Doc implements modules.Module.
func (Module) Doc() string {
	return "Inspect, read, write and list files. Paths must be absolute; reads are bounded; writes are atomic."
}

var pathParam = modules.Param{Name: "path", Type: modules.String, Required: true, Doc: "absolute path"}

// Methods implements modules.Module.
func (Module) Methods() []*modules.Method {
	return []*modules.Method{
		{Name: "stat", Doc: "Describe a path without following a final symlink. A missing path is not an error: exists is false.",
			Returns: "{path, exists, type (file, dir, symlink, other), size, mode (octal, \"0644\"), uid, gid, owner, group, mtime, target (of a symlink)}",
			Params:  []modules.Param{pathParam}, Positional: 1,
			Run: stat},
		{Name: "read", Doc: "Read a regular file, up to max_bytes. Text that is not valid UTF-8 comes back base64-encoded.",
			Returns: "{path, content, encoding (utf-8 or base64), size (the file's), truncated}",
			Params: []modules.Param{
				pathParam,
				{Name: "max_bytes", Type: modules.Int, Default: DefaultMaxRead, Doc: "read at most this many bytes (at most 16 MiB)"},
			},
			Positional: 1,
			Run:        read},
		{Name: "write", Doc: "Write a file atomically: a temporary file in the same directory, synced, then renamed over the path. " +
			"Without mode, a replaced file keeps its mode and a new file gets 0644; a replaced file keeps its owner. " +
			"A symlink at the path is replaced, not followed.",
			Returns: "{path, size, sha256}",
			Params: []modules.Param{
				pathParam,
				{Name: "content", Type: modules.String, Required: true, Doc: "the new content"},
				{Name: "encoding", Type: modules.String, Default: "utf-8", Doc: "how content is encoded: utf-8 or base64"},
				{Name: "mode", Type: modules.String, Doc: `permissions in octal, such as "0644" or "4755"`},
				{Name: "mkdirs", Type: modules.Bool, Default: false, Doc: "create missing parent directories (mode 0755)"},
			},
			Positional: 2,
			Run:        write},
		{Name: "checksum", Doc: "Hash a regular file's content, streaming it.",
			Returns: "{path, size, algo, <algo>: hex digest}, such as {\"sha256\": \"e3b0...\"}",
			Params: []modules.Param{
				pathParam,
				{Name: "algo", Type: modules.String, Default: "sha256", Doc: "sha256, sha512, sha1 or md5"},
			},
			Positional: 2,
			Run:        checksum},
		{Name: "list", Doc: "List a directory's entries sorted by name, up to max_entries (the first by name).",
			Returns: "{path, entries: [{name, type, size, mode, mtime}], total, truncated}",
			Params: []modules.Param{
				pathParam,
				{Name: "max_entries", Type: modules.Int, Default: DefaultMaxEntries, Doc: "return at most this many entries (at most 100000)"},
			},
			Positional: 1,
			Run:        list},
		{Name: "exists", Doc: "Report whether a path exists; a symlink exists even if its target does not.",
			Returns: "true or false",
			Params:  []modules.Param{pathParam}, Positional: 1,
			Run: exists},
	}
}

// absPath returns the path argument, or a bad_args error unless it is
// absolute.
func absPath(method string, a modules.Args) (string, error) {
	p := a.String("path")
	if !strings.HasPrefix(p, "/") {
		return "", status.Errorf(status.KindBadArgs, "%s: parameter path: must be an absolute path, got %q", method, p)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", status.Errorf(status.KindBadArgs, "%s: parameter path: contains a NUL byte", method)
	}
	return p, nil
}

// Stat is what stat returns. For a missing path only Path and Exists are
// set, and Attrs is nil.
type Stat struct {
	Path   string `json:"path"`
	Exists bool   `json:"exists"`
	*Attrs
}

// Attrs are the attributes of an existing path.
type Attrs struct {
	Type   string    `json:"type"`
	Size   int64     `json:"size"`
	Mode   string    `json:"mode"` // permission bits in octal, "0644"
	UID    int       `json:"uid"`
	GID    int       `json:"gid"`
	Owner  string    `json:"owner"` // user name, or the uid if it has none
	Group  string    `json:"group"` // group name, or the gid if it has none
	MTime  time.Time `json:"mtime"`
	Target string    `json:"target,omitempty"` // a symlink's target
}

func stat(_ context.Context, a modules.Args) (any, error) {
	p, err := absPath("stat", a)
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(p)
	if os.IsNotExist(err) || isNotDir(err) {
		return Stat{Path: p}, nil
	}
	if err != nil {
		return nil, err
	}
	at := &Attrs{
		Type:  fileType(fi.Mode()),
		Size:  fi.Size(),
		Mode:  octal(fi.Mode()),
		MTime: fi.ModTime(),
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		at.UID, at.GID = int(st.Uid), int(st.Gid)
	}
	at.Owner, at.Group = userName(at.UID), groupName(at.GID)
	if at.Type == TypeSymlink {
		at.Target, _ = os.Readlink(p)
	}
	return Stat{Path: p, Exists: true, Attrs: at}, nil
}

// isNotDir reports whether err says a parent in the path is not a
// directory, which for stat and exists means the path does not exist.
func isNotDir(err error) bool {
	pe, ok := err.(*fs.PathError)
	return ok && pe.Err == syscall.ENOTDIR
}

func fileType(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return TypeFile
	case fs.ModeDir:
		return TypeDir
	case fs.ModeSymlink:
		return TypeSymlink
	}
	return TypeOther
}

// octal formats m's permission bits, with setuid, setgid and sticky, the
// way chmod takes them.
func octal(m fs.FileMode) string {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return fmt.Sprintf("%04o", v)
}

// parseMode parses an octal mode such as "0644", "644" or "4755".
func parseMode(s string) (fs.FileMode, bool) {
	s = strings.TrimPrefix(s, "0o")
	if s == "" || len(s) > 5 {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o7777 {
		return 0, false
	}
	m := fs.FileMode(v & 0o777)
	if v&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if v&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if v&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m, true
}

func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

func groupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return strconv.Itoa(gid)
}

// Read is what read returns.
type Read struct {
	Path      string `json:"path"`
	Content   string `json:"content"`
	Encoding  string `json:"encoding"` // "utf-8" or "base64"
	Size      int64  `json:"size"`     // the file's size; 0 for files such as /proc's
	Truncated bool   `json:"truncated"`
}

func read(_ context.Context, a modules.Args) (any, error) {
	p, err := absPath("read", a)
	if err != nil {
		return nil, err
	}
	limit := a.Int("max_bytes")
	if limit <= 0 || limit > MaxRead {
		return nil, status.Errorf(status.KindBadArgs, "read: parameter max_bytes: must be between 1 and %d, got %d", MaxRead, limit)
	}
	f, fi, err := OpenRegular(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	res := Read{Path: p, Size: fi.Size()}
	if len(data) > int(limit) {
		data, res.Truncated = data[:limit], true
		// Cutting the data may split the last character; drop its
		// leading bytes so that text stays text.
		data = trimPartialRune(data)
	}
	if utf8.Valid(data) {
		res.Content, res.Encoding = string(data), "utf-8"
	} else {
		res.Content, res.Encoding = base64.StdEncoding.EncodeToString(data), "base64"
	}
	return res, nil
}

// trimPartialRune drops an incomplete UTF-8 sequence from the end of b.
func trimPartialRune(b []byte) []byte {
	for i := 1; i <= utf8.UTFMax-1 && i <= len(b); i++ {
		c := b[len(b)-i]
		if c < utf8.RuneSelf { // ASCII: nothing partial after it
			return b
		}
		if utf8.RuneStart(c) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i]
			}
			return b
		}
	}
	return b
}

// Write is what write returns.
type Write struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

func write(_ context.Context, a modules.Args) (any, error) {
	p, err := absPath("write", a)
	if err != nil {
		return nil, err
	}
	var data []byte
	switch enc := a.String("encoding"); strings.ToLower(enc) {
	case "utf-8", "utf8":
		data = []byte(a.String("content"))
	case "base64":
		data, err = base64.StdEncoding.DecodeString(a.String("content"))
		if err != nil {
			return nil, status.Errorf(status.KindBadArgs, "write: parameter content: not valid base64: %v", err)
		}
	default:
		return nil, status.Errorf(status.KindBadArgs, "write: parameter encoding: want utf-8 or base64, got %q", enc)
	}
	// Without a mode, a replaced file keeps its mode, a new one is 0644;
	// a replaced file keeps its owner where the minion may set it.
	o := atomicfile.Options{Mode: 0o644, KeepMode: true, KeepOwner: true}
	if a.Has("mode") {
		m, ok := parseMode(a.String("mode"))
		if !ok {
			return nil, status.Errorf(status.KindBadArgs, "write: parameter mode: want octal permissions such as \"0644\", got %q", a.String("mode"))
		}
		o.Mode, o.KeepMode = m, false
	}
	if a.Bool("mkdirs") {
		dir, _, err := atomicfile.Split(p)
		if err != nil {
			return nil, status.Errorf(status.KindBadArgs, "write: parameter path: %v", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	n, sum, err := atomicfile.Write(p, bytes.NewReader(data), o)
	if err != nil {
		return nil, err
	}
	return Write{Path: p, Size: n, SHA256: sum}, nil
}

func checksum(ctx context.Context, a modules.Args) (any, error) {
	p, err := absPath("checksum", a)
	if err != nil {
		return nil, err
	}
	algo := strings.ToLower(a.String("algo"))
	if _, ok := hashes[algo]; !ok {
		return nil, status.Errorf(status.KindBadArgs, "checksum: parameter algo: want sha256, sha512, sha1 or md5, got %q", a.String("algo"))
	}
	sum, n, err := hashFile(ctx, p, algo)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, status.Errorf(status.KindTimeout, "checksum of %s stopped at the call's deadline", p)
		} else if ctx.Err() != nil {
			return nil, status.Errorf(status.KindCancelled, "checksum of %s cancelled", p)
		}
		return nil, err
	}
	return map[string]any{"path": p, "size": n, "algo": algo, algo: sum}, nil
}

func exists(_ context.Context, a modules.Args) (any, error) {
	p, err := absPath("exists", a)
	if err != nil {
		return nil, err
	}
	_, err = os.Lstat(p)
	switch {
	case err == nil:
		return true, nil
	case os.IsNotExist(err) || isNotDir(err):
		return false, nil
	}
	return nil, err
}
