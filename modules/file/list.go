package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/status"
)

// List is what list returns.
type List struct {
	Path      string  `json:"path"`
	Entries   []Entry `json:"entries"`
	Total     int     `json:"total"` // entries in the directory
	Truncated bool    `json:"truncated"`
}

// Entry is one directory entry.
type Entry struct {
	Name  string    `json:"name"`
	Type  string    `json:"type"`
	Size  int64     `json:"size"`
	Mode  string    `json:"mode"`
	MTime time.Time `json:"mtime"`
	Error string    `json:"error,omitempty"` // why the entry could not be described
}

// readDirBatch is how many names list reads at a time.
const readDirBatch = 1024

func list(ctx context.Context, a modules.Args) (any, error) {
	p, err := absPath("list", a)
	if err != nil {
		return nil, err
	}
	limit := a.Int("max_entries")
	if limit <= 0 || limit > MaxEntries {
		return nil, status.Errorf(status.KindBadArgs, "list: parameter max_entries: must be between 1 and %d, got %d", MaxEntries, limit)
	}
	names, total, err := firstNames(ctx, p, int(limit))
	if err != nil {
		return nil, err
	}
	res := List{Path: p, Entries: make([]Entry, 0, len(names)), Total: total, Truncated: total > len(names)}
	for _, name := range names {
		fi, err := os.Lstat(filepath.Join(p, name))
		switch {
		case os.IsNotExist(err):
			continue // removed since the directory was read
		case err != nil:
			res.Entries = append(res.Entries, Entry{Name: name, Error: err.Error()})
			continue
		}
		res.Entries = append(res.Entries, Entry{
			Name:  name,
			Type:  fileType(fi.Mode()),
			Size:  fi.Size(),
			Mode:  octal(fi.Mode()),
			MTime: fi.ModTime(),
		})
	}
	return res, nil
}

// firstNames returns the first n names of directory dir in sorted order
// and how many names it holds. It keeps at most about 2n names in memory
// however large the directory is.
func firstNames(ctx context.Context, dir string, n int) (names []string, total int, err error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, 0, err
	}
	defer d.Close()
	fi, err := d.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !fi.IsDir() {
		return nil, 0, fmt.Errorf("%s is not a directory", dir)
	}
	for {
		if err := ctx.Err(); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return nil, 0, status.Errorf(status.KindTimeout, "listing %s stopped at the call's deadline", dir)
			}
			return nil, 0, status.Errorf(status.KindCancelled, "listing %s cancelled", dir)
		}
		batch, err := d.Readdirnames(readDirBatch)
		total += len(batch)
		names = append(names, batch...)
		if len(names) > 2*n {
			sort.Strings(names)
			names = names[:n]
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, 0, err
		}
	}
	sort.Strings(names)
	if len(names) > n {
		names = names[:n]
	}
	return names, total, nil
}
