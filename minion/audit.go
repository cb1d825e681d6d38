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
	"sync"
	"time"
)

// AuditFile is the audit log in a minion's state directory: one JSON line
// per call; AuditFile+".1" holds the previous one after a rotation.
const AuditFile = "audit.log"

// maxAuditSize is the size at which the audit log is rotated.
const maxAuditSize = 32 << 20

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
	mu   sync.Mutex
	path string
	f    *os.File
	size int64
}

func openAudit(stateDir string) (*auditLog, error) {
	a := &auditLog{path: filepath.Join(stateDir, AuditFile)}
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
	if len(e.Message) > 512 {
		e.Message = e.Message[:512] + "..."
	}
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
	if a.size+int64(len(line)) > maxAuditSize {
		a.f.Close()
		if err := os.Rename(a.path, a.path+".1"); err != nil {
			return err
		}
		if err := a.open(); err != nil {
			a.f = nil
			return err
		}
	}
	n, err := a.f.Write(line)
	a.size += int64(n)
	return err
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
// (0: all), oldest first. Lines it cannot decode are skipped.
func ReadAudit(stateDir string, limit int) ([]AuditEntry, error) {
	f, err := os.Open(filepath.Join(stateDir, AuditFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []AuditEntry
	sc := bufio.NewScanner(io.LimitReader(f, maxAuditSize+1<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e AuditEntry
		if json.Unmarshal(bytes.TrimSpace(sc.Bytes()), &e) != nil {
			continue
		}
		out = append(out, e)
		if limit > 0 && len(out) > limit {
			out = out[1:]
		}
	}
	return out, sc.Err()
}
