// Package mount is the mount module: the file systems mounted on a minion,
// read from /proc/self/mounts (Linux).
package mount

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/status"
)

// MaxTable is the most of the mount table list reads, in bytes. A larger
// table is listed up to this point, with a module_error saying so.
const MaxTable = 16 << 20

// tablePath is where the mount table is read, relative to Module.FS.
const tablePath = "proc/self/mounts"

// Module is the mount module.
type Module struct {
	// FS is the file system the mount table is read from, as
	// proc/self/mounts. Nil means the real root, os.DirFS("/").
	FS fs.FS
	// Max is the most of the table read, in bytes; 0 means MaxTable.
	Max int
}

var _ modules.Module = Module{}

// Name implements modules.Module.
func (Module) Name() string { return "mount" }

// Doc implements modules.Module.
func (Module) Doc() string { return "The file systems mounted on the minion (Linux)." }

// Methods implements modules.Module.
func (m Module) Methods() []*modules.Method {
	return []*modules.Method{{
		Name: "list",
		Doc: "List the mounts in the minion's mount namespace, in mount order, from /proc/self/mounts. " +
			`Escaped characters (\040 for a space) are decoded.`,
		Returns: "list of {device, mountpoint, fstype, options (list of strings)}",
		Run:     m.list,
	}}
}

// Mount is one entry of the mount table.
type Mount struct {
	Device     string   `json:"device"`
	Mountpoint string   `json:"mountpoint"`
	FSType     string   `json:"fstype"`
	Options    []string `json:"options"`
}

func (m Module) list(context.Context, modules.Args) (any, error) {
	fsys := m.FS
	if fsys == nil {
		fsys = os.DirFS("/")
	}
	f, err := fsys.Open(tablePath)
	if err != nil {
		return nil, unavailable(err)
	}
	defer f.Close()
	limit := m.Max
	if limit <= 0 {
		limit = MaxTable
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, unavailable(err)
	}
	truncated := len(data) > limit
	if truncated {
		// Keep whole lines only.
		data = data[:strings.LastIndexByte(string(data[:limit]), '\n')+1]
	}
	mounts := parse(string(data))
	if truncated {
		return mounts, status.Errorf(status.KindModuleError, "mount table larger than %s: listed the first %d mounts", size(limit), len(mounts))
	}
	return mounts, nil
}

// size says n bytes in MiB or KiB when it is a whole number of them.
func size(n int) string {
	switch {
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

func unavailable(err error) error {
	msg := fmt.Sprintf("cannot read the mount table: %v", err)
	if runtime.GOOS != "linux" {
		msg += fmt.Sprintf(" (mount.list reads /proc/self/mounts, which %s does not have)", runtime.GOOS)
	}
	return status.Errorf(status.KindModuleError, "%s", msg)
}

// parse parses a mount table in the format of /proc/self/mounts (and
// /etc/mtab): one mount a line, fields separated by spaces, the characters
// the kernel escapes written as a backslash and three octal digits. Lines
// with fewer than four fields are skipped. It never returns nil.
func parse(table string) []Mount {
	mounts := []Mount{}
	for line := range strings.Lines(table) {
		fields := strings.Fields(line)
		if len(fields) < 4 {
			continue
		}
		// Options are split before they are decoded: the kernel escapes a
		// comma inside an option's value as \054.
		opts := strings.Split(fields[3], ",")
		for i, o := range opts {
			opts[i] = unescape(o)
		}
		mounts = append(mounts, Mount{
			Device:     unescape(fields[0]),
			Mountpoint: unescape(fields[1]),
			FSType:     unescape(fields[2]),
			Options:    opts,
		})
	}
	return mounts
}

// unescape decodes \ooo octal escapes; a backslash not followed by three
// octal digits stays as it is.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			n := (int(s[i+1]-'0') << 6) | (int(s[i+2]-'0') << 3) | int(s[i+3]-'0')
			if n <= 0xff {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }
