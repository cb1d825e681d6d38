package minion

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/overlordhq/overlord/status"
)

// AuditFile is the audit log in a minion's state directory: one JSON line
// per call. When it is full it is rotated: AuditFile+".1" holds the
// previous one, and so on up to AuditFile+".5", the oldest kept.
const AuditFile = "audit.log"

// Limits of the audit log.
const (
	maxAuditSize    = 32 << 20 // the size at which it is rotated
	auditKeep       = 5        // rotated files kept
	maxAuditField   = 256      // bytes kept of a string field of an entry
	maxAuditMessage = 512      // bytes kept of an entry's message
	maxAuditLine    = 64 << 10 // ReadAudit skips longer lines
)

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	Time     time.Time `json:"time"`
	Identity string    `json:"identity"`
	// Via is the gateway that passed the call on (rpc.OnBehalfOfHeader);
	// Identity is then the overlord identity it called for. Empty for a
	// direct call.
	Via         string `json:"via,omitempty"`
	Remote      string `json:"remote"`
	RPC         string `json:"rpc"`            // Minion.Call, Minion.Submit, ...
	Call        string `json:"call,omitempty"` // module.method
	ArgsSHA256  string `json:"args_sha256,omitempty"`
	JobID       string `json:"job_id,omitempty"`        // the minion job, for async calls
	OriginJobID string `json:"origin_job_id,omitempty"` // the overlord's job
	Outcome     string `json:"outcome"`                 // ok, or an error kind
	Message     string `json:"message,omitempty"`
	DurationMS  int64  `json:"duration_ms,omitempty"`
}

// AuditRefused is the RPC of an audit entry for a request refused before
// its method was read: a gateway that named no identity, or one that
// may not be called for, or an overlord identity that named another.
const AuditRefused = "refused"

// maxAuditEntry bounds the bytes of one line of the audit log: its
// string fields cut (maxAuditField, maxAuditMessage), even if every byte
// of them takes six in JSON (\u0000), and the rest of the entry.
const maxAuditEntry = 9*6*maxAuditField + 6*maxAuditMessage + 1<<10

// ErrNoAudit is returned, as a refusal of the call, when a minion has no
// audit log to record a call in: a Service that was not given one.
var ErrNoAudit = errors.New("this minion has no audit log, so it refuses every call")

// auditFile is the open log: an *os.File, or a fake in tests.
type auditFile interface {
	io.WriteCloser
	Truncate(size int64) error
	Stat() (fs.FileInfo, error)
}

// auditLog appends entries to the audit log. Its methods are safe for
// concurrent use. It fails closed: ready, which every call that is
// recorded asks before it runs anything, refuses while a line may not
// fit (the file system is full, the file size limit reached) or the file
// cannot be opened, or while entries were lost and the line that says so
// cannot be written; and a line is never torn into the next one (a failed
// write is cut back to the last whole line, or the next line starts on a
// new one). A nil *auditLog refuses every call (ErrNoAudit).
type auditLog struct {
	mu     sync.Mutex
	path   string
	f      auditFile // nil until opened; after a failed rotation, until opened again
	closed bool
	size   int64 // bytes in the file, a torn tail included
	torn   bool  // the file may end in part of a line
	// lost counts the entries not written since lostSince (the first
	// failure, lostErr); the next line written says so.
	lost      int
	lostSince time.Time
	lostErr   error
	maxSize   int64 // maxAuditSize, but for tests
	// openFile opens the log for appending (os.OpenFile, but for tests).
	openFile func(path string) (auditFile, error)
	// room returns an error unless the file at path, now size bytes
	// long, can grow by need bytes (auditRoom, but for tests).
	room func(path string, size, need int64) error
}

func openAudit(stateDir string) (*auditLog, error) {
	a := &auditLog{path: filepath.Join(stateDir, AuditFile), maxSize: maxAuditSize, openFile: openAuditFile, room: auditRoom}
	if err := a.open(); err != nil {
		return nil, err
	}
	return a, nil
}

func openAuditFile(path string) (auditFile, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
}

func (a *auditLog) open() error {
	if a.path == "" {
		return errors.New("no audit log file")
	}
	if a.openFile == nil {
		a.openFile = openAuditFile
	}
	if a.maxSize <= 0 {
		a.maxSize = maxAuditSize
	}
	f, err := a.openFile(a.path)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	a.f, a.size = f, fi.Size()
	a.torn = a.size > 0 && !endsLine(a.path)
	return nil
}

// endsLine reports whether the file at path ends with a newline.
func endsLine(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [1]byte
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return err == nil
	}
	_, err = f.ReadAt(b[:], fi.Size()-1)
	return err == nil && b[0] == '\n'
}

// ready returns nil if an entry can be recorded now, else the error with
// which a call is refused (kind internal): it is asked before a call runs
// anything, so that no call runs unrecorded. It opens the log again if a
// rotation left it closed, checks that a line of the longest kind fits,
// and after entries were lost, writes the line that says so: until that
// line is written, calls are refused.
func (a *auditLog) ready() error {
	if a == nil {
		return status.Errorf(status.KindInternal, "%v", ErrNoAudit)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.reopen()
	if err == nil && a.room != nil {
		size := a.size
		if size+maxAuditEntry > a.maxSize {
			size = 0 // the line starts a new file
		}
		err = a.room(a.path, size, maxAuditEntry)
	}
	if err == nil {
		err = a.writeGap()
	}
	if err != nil {
		return status.Errorf(status.KindInternal, "the minion cannot write its audit log, so it refuses calls until it can (free space in its state directory): %v", err)
	}
	return nil
}

// reopen opens the log if a rotation could not; with a.mu held.
func (a *auditLog) reopen() error {
	switch {
	case a.closed:
		return errors.New("audit log closed")
	case a.f == nil:
		return a.open()
	}
	return nil
}

// record appends e as one line, rotating the log when it is full. It
// returns an error if the line could not be written whole; the file is
// then cut back to the lines before it, or, if it cannot be, the next
// line starts on a new one, so that no line is ever glued to a torn one.
// Entries that could not be written are counted, and the next line
// written is one that says how many (RPC "audit", outcome internal).
func (a *auditLog) record(e AuditEntry) error {
	if a == nil {
		return ErrNoAudit
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.writeGap()
	if err == nil {
		err = a.write(e)
	}
	if err != nil {
		if a.lost == 0 {
			a.lostSince, a.lostErr = time.Now().UTC(), err
		}
		a.lost++
	}
	return err
}

// writeGap writes, if entries were lost, the line that says so; with
// a.mu held.
func (a *auditLog) writeGap() error {
	if a.lost == 0 {
		return nil
	}
	err := a.write(AuditEntry{RPC: "audit", Outcome: string(status.KindInternal),
		Message: fmt.Sprintf("%d entries could not be written to the audit log since %s: %v",
			a.lost, a.lostSince.Format(time.RFC3339Nano), a.lostErr)})
	if err == nil {
		a.lost = 0
	}
	return err
}

// write appends e as one line; with a.mu held.
func (a *auditLog) write(e AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	// Whatever a caller sends, an entry stays a short line.
	for _, f := range []*string{&e.Identity, &e.Via, &e.Remote, &e.RPC, &e.Call, &e.ArgsSHA256, &e.JobID, &e.OriginJobID, &e.Outcome} {
		*f = truncateUTF8(*f, maxAuditField)
	}
	e.Message = truncateUTF8(e.Message, maxAuditMessage)
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	if err := a.reopen(); err != nil {
		return err
	}
	if a.size+int64(len(line)) > a.maxSize {
		if err := a.rotate(); err != nil {
			return err
		}
	}
	if a.torn {
		// The file may end in part of a line (a write that failed and
		// could not be cut back, or a file found so at open): start a
		// new one, in the same write. An empty line is skipped by
		// readers.
		line = append([]byte{'\n'}, line...)
	}
	n, err := a.f.Write(line) // one write: concurrent writers never interleave
	if err == nil && n < len(line) {
		err = io.ErrShortWrite
	}
	if err != nil {
		if n > 0 {
			if terr := a.f.Truncate(a.size); terr == nil {
				n = 0
			}
		}
		a.size += int64(n)
		a.torn = a.torn || n > 0
		return fmt.Errorf("write %s: %w", a.path, err)
	}
	a.size += int64(n)
	a.torn = false
	return nil
}

// rotate shifts audit.log.N to N+1 (the oldest kept goes), audit.log to
// audit.log.1, and starts a new audit.log. If the new one cannot be
// opened, the next ready or record tries again.
func (a *auditLog) rotate() error {
	a.f.Close()
	a.f = nil
	for i := auditKeep - 1; i >= 1; i-- {
		err := os.Rename(rotated(a.path, i), rotated(a.path, i+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.Rename(a.path, rotated(a.path, 1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return a.open()
}

// rotated is the name of the i-th rotated file of the log at path (0:
// the log itself).
func rotated(path string, i int) string {
	if i == 0 {
		return path
	}
	return path + "." + strconv.Itoa(i)
}

func (a *auditLog) Close() error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}

// argsDigest is the SHA-256 of the arguments' JSON (map keys sorted), so
// the log shows which calls had the same arguments without storing them.
func argsDigest(named map[string]any, positional []any) string {
	if len(named) == 0 && len(positional) == 0 {
		return ""
	}
	data, err := json.Marshal(struct {
		Args       map[string]any `json:"args,omitempty"`
		Positional []any          `json:"positional,omitempty"`
	}{named, positional})
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// ReadAudit returns the last limit entries of the audit log in stateDir
// (0: all), oldest first, reading the rotated files too when the current
// one holds fewer. Lines it cannot decode, or longer than any entry the
// minion writes, are skipped; of a line that holds an entry glued to the
// torn start of another, the entry is read.
func ReadAudit(stateDir string, limit int) ([]AuditEntry, error) {
	path := filepath.Join(stateDir, AuditFile)
	var out []AuditEntry
	for i := 0; i <= auditKeep && (limit <= 0 || len(out) < limit); i++ {
		es, err := readAuditFile(rotated(path, i))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(es, out...)
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

// parseAuditLine decodes one line. A line that does not decode may be a
// whole entry glued to the torn start of another (written before the
// minion cut torn lines back): the last entry that starts in it is tried.
func parseAuditLine(line []byte) (AuditEntry, bool) {
	var e AuditEntry
	if json.Unmarshal(line, &e) == nil {
		return e, true
	}
	if i := bytes.LastIndex(line, []byte(`{"time":`)); i > 0 && json.Unmarshal(line[i:], &e) == nil {
		return e, true
	}
	return AuditEntry{}, false
}

func readAuditFile(path string) ([]AuditEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []AuditEntry
	r := bufio.NewReaderSize(io.LimitReader(f, maxAuditSize+1<<20), maxAuditLine)
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Skip the rest of an over-long line.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
		} else if line = bytes.TrimSpace(line); len(line) > 0 {
			if e, ok := parseAuditLine(line); ok {
				out = append(out, e)
			}
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}
