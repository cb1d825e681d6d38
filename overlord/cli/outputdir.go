package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/overlordhq/overlord/internal/atomicfile"
	"github.com/overlordhq/overlord/status"
)

// outputDir is --output-dir: each minion's NAME.stdout, NAME.stderr and
// NAME.json, written as its result arrives. The directory is made 0700
// (a command's output may be secret) and the files 0600, each written to
// a temporary name and renamed, so a reader never sees half a file. The
// files are opened through an os.Root: a name cannot lead out of it.
type outputDir struct {
	path string
	root *os.Root
}

// openOutputDir makes dir if it is missing and opens it.
func openOutputDir(dir string) (*outputDir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("--output-dir: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("--output-dir: %w", err)
	}
	return &outputDir{path: dir, root: root}, nil
}

// Close closes the directory.
func (d *outputDir) Close() error {
	if d == nil {
		return nil
	}
	return d.root.Close()
}

// write writes name's files: NAME.json always (the entry as -o json has
// it); NAME.stdout and NAME.stderr once the entry is FINISHED. For a
// command's result they hold its output byte for byte; for another
// result, NAME.stdout holds the value as JSON; a failure without output
// leaves them empty.
func (d *outputDir) write(name string, r status.Result) error {
	if !safeFileName(name) {
		return fmt.Errorf("--output-dir: minion name %q cannot be a file name; its result is not written", name)
	}
	entry, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("--output-dir: %s: %w", name, err)
	}
	type file struct {
		ext  string
		data []byte
	}
	files := []file{{".json", append(entry, '\n')}}
	if r.State == status.Finished {
		var stdout, stderr []byte
		if c, ok := commandOf(r.Result); ok {
			stdout, stderr = []byte(c.stdout()), []byte(c.stderr())
		} else if v := bytes.TrimSpace(r.Result); len(v) > 0 {
			var pretty bytes.Buffer
			if json.Indent(&pretty, v, "", "  ") != nil {
				pretty.Reset()
				pretty.Write(v)
			}
			stdout = append(pretty.Bytes(), '\n')
		}
		files = append(files, file{".stdout", stdout}, file{".stderr", stderr})
	}
	for _, f := range files {
		if err := d.writeFile(name+f.ext, f.data); err != nil {
			return fmt.Errorf("--output-dir: %w", err)
		}
	}
	return nil
}

// writeFile writes data to file in the directory through a temporary
// name (atomicfile, confined to the root), mode 0600 under the umask.
// The files are output for people, not state: they are not synced.
func (d *outputDir) writeFile(file string, data []byte) error {
	err := atomicfile.WriteFile(file, data, atomicfile.Options{Mode: 0o600, Umask: true, NoSync: true, Root: d.root})
	if err != nil {
		return fmt.Errorf("in %s: %w", d.path, err)
	}
	return nil
}

// safeFileName reports whether a minion name can name files in the
// directory: minion names are checked when minions are added, this keeps
// the files inside whatever the store holds.
func safeFileName(name string) bool {
	return name != "" && filepath.IsLocal(name) && !strings.ContainsAny(name, `/\`) && !strings.HasPrefix(name, ".")
}
