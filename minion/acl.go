package minion

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/status"
)

// ACLFile is the access list in a minion's state directory: one line per
// overlord identity, "NAME: pattern pattern ...", patterns being globs on
// MODULE.METHOD ("test.*", "facts.get"). Names match whatever their
// case. An identity with no line may call anything, unless a "*:" line
// sets the default. '#' starts a comment. The file is read again
// whenever it changes.
const ACLFile = "acl.conf"

// maxACLSize bounds acl.conf.
const maxACLSize = 1 << 20

// acl decides which identity may call which method.
type acl struct {
	path string

	mu    sync.Mutex
	mtime time.Time
	size  int64
	ino   uint64
	ctime int64
	rules map[string][]string // identity in lower case -> patterns; "*" the default
	err   error               // a broken file denies everything
}

// newACL returns the access list of the state directory stateDir; nil
// (which denies everything) for none.
func newACL(stateDir string) *acl {
	if stateDir == "" {
		return nil
	}
	return &acl{path: stateDir + string(os.PathSeparator) + ACLFile}
}

// allow returns nil if identity may call module.method, else a denied
// error that says why. A nil *acl, a minion without a state directory to
// hold acl.conf, denies everything.
func (a *acl) allow(identity, module, method string) error {
	if a == nil {
		return status.Errorf(status.KindDenied, "this minion has no state directory for %s, so every call is refused", ACLFile)
	}
	rules, err := a.load()
	if err != nil {
		return status.Errorf(status.KindDenied, "the minion's %s is broken, so every call is refused: %v", ACLFile, err)
	}
	patterns, ok := rules[certs.NameKey(identity)]
	if !ok {
		if patterns, ok = rules["*"]; !ok {
			return nil // no line, no default: full access
		}
	}
	call := module + "." + method
	for _, p := range patterns {
		if ok, _ := path.Match(p, call); ok {
			return nil
		}
	}
	return status.Errorf(status.KindDenied, "%s may not call %s on this minion (%s allows: %s)", identity, call, ACLFile, strings.Join(patterns, " "))
}

// sameIdentity reports whether two overlord identity names are one
// identity: the one comparison the access list and the ownership of async
// jobs (Status, Cancel, List) make, whatever the names' case.
func sameIdentity(a, b string) bool { return certs.SameName(a, b) }

// load returns the rules, reading the file again if it changed.
func (a *acl) load() (map[string][]string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fi, err := os.Stat(a.path)
	if errors.Is(err, fs.ErrNotExist) {
		a.rules, a.err, a.mtime, a.size, a.ino, a.ctime = nil, nil, time.Time{}, -1, 0, 0
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// A file replaced (another inode) or rewritten (a later change time)
	// is read again even if its size and modification time are the same.
	ino, ctime := fileChange(fi)
	if fi.ModTime().Equal(a.mtime) && fi.Size() == a.size && ino == a.ino && ctime == a.ctime {
		return a.rules, a.err
	}
	a.mtime, a.size, a.ino, a.ctime = fi.ModTime(), fi.Size(), ino, ctime
	a.rules, a.err = parseACL(a.path)
	return a.rules, a.err
}

func parseACL(file string) (map[string][]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if fi.Size() > maxACLSize {
		return nil, fmt.Errorf("%s is over %d bytes", file, maxACLSize)
	}
	rules := map[string][]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, pats, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("line %d: want NAME: pattern ..., got %q", n, line)
		}
		if name != "*" {
			if err := certs.CheckName(name); err != nil {
				return nil, fmt.Errorf("line %d: %v", n, err)
			}
		}
		// Names are DNS-style: case does not tell two identities apart.
		key := certs.NameKey(name)
		if _, dup := rules[key]; dup {
			return nil, fmt.Errorf("line %d: %s has a line already", n, name)
		}
		patterns := strings.Fields(pats)
		for _, p := range patterns {
			if _, err := path.Match(p, ""); err != nil || !strings.Contains(p, ".") && p != "*" {
				return nil, fmt.Errorf("line %d: bad pattern %q (want MODULE.METHOD globs such as test.* or facts.get)", n, p)
			}
		}
		rules[key] = patterns // no patterns: nothing allowed
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return rules, nil
}
