package minion

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
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
	Time        time.Time `json:"time"`
	Identity    string    `json:"identity"`
	Remote      string    `json:"remote"`
	RPC         string    `json:"rpc"`            // Minion.Call, Minion.Submit, ...
	Call        string    `json:"call,omitempty"` // module.method
	ArgsSHA256  string    `json:"args_sha256,omitempty"`
	JobID       string    `json:"job_id,omitempty"`        // the minion job, for async calls
	OriginJobID string    `json:"origin_job_id,omitempty"` // the overlord's job
	Outcome     string    `json:"outcome"`                 // ok, or an error kind
	Message     string    `json:"message,omitempty"`
	DurationMS  int64     `json:"duration_ms,omitempty"`
}

// auditLog appends entries to the audit log. Its methods are safe for
// concurrent use; a nil *auditLog records nothing.
type auditLog struct {
	mu      sync.Mutex
	path    string
	f       *os.File
	size    int64
	maxSize int64 // maxAuditSize, but for tests
}

func openAudit(stateDir string) (*auditLog, error) {
	a := &auditLog{path: filepath.Join(stateDir, AuditFile), maxSize: maxAuditSize}
	if err := a.open(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *auditLog) open() error {
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	a.f, a.size = f, fi.Size()
	return nil
}

// record appends e, rotating the log when it is full. A failure to write
// is returned so the caller can log it; the call itself goes on.
func (a *auditLog) record(e AuditEntry) error {
	if a == nil {
		return nil
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	// Whatever a caller sends, an entry stays a short line.
	for _, f := range []*string{&e.Identity, &e.Remote, &e.RPC, &e.Call, &e.ArgsSHA256, &e.JobID, &e.OriginJobID, &e.Outcome} {
		*f = truncateUTF8(*f, maxAuditField)
	}
	e.Message = truncateUTF8(e.Message, maxAuditMessage)
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return errors.New("audit log closed")
	}
	if a.size+int64(len(line)) > a.maxSize {
		if err := a.rotate(); err != nil {
			return err
		}
	}
	n, err := a.f.Write(line)
	a.size += int64(n)
	return err
}

// rotate shifts audit.log.N to N+1 (the oldest kept goes), audit.log to
// audit.log.1, and starts a new audit.log.
func (a *auditLog) rotate() error {
	a.f.Close()
	a.f = nil
	for i := auditKeep - 1; i >= 1; i-- {
		err := os.Rename(rotated(a.path, i), rotated(a.path, i+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.Rename(a.path, rotated(a.path, 1)); err != nil {
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
// minion writes, are skipped.
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
			var e AuditEntry
			if json.Unmarshal(line, &e) == nil {
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
