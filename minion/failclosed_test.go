package minion

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/overlordhq/overlord/certs/certstest"
	"github.com/overlordhq/overlord/modules/builtin"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// touchCall runs command.run 'touch FILE' through svc as identity op.
func touchCall(svc *Service, file string) error {
	return svc.Call(asIdentity("op"), &rpc.CallParams{Module: "command", Method: "run", Args: map[string]any{"cmd": "touch " + file}}, &rpc.CallReply{})
}

func exists(file string) bool {
	_, err := os.Stat(file)
	return err == nil
}

// TestZeroValuesFailClosed: a Service without an ACL denies every call,
// and one without an audit log refuses every call it would record;
// neither runs anything.
func TestZeroValuesFailClosed(t *testing.T) {
	dir := t.TempDir()
	a := newAsync(t, dir)
	defer a.Close()
	marker := filepath.Join(dir, "ran")
	for _, tc := range []struct {
		name string
		svc  *Service
		kind status.Kind
	}{
		{"no ACL", &Service{Logger: newTestLogger(t), Registry: builtin.Registry(), jobs: a, audit: mustOpenAudit(t, t.TempDir()), files: newTransfers()}, status.KindDenied},
		{"no audit log", &Service{Logger: newTestLogger(t), Registry: builtin.Registry(), jobs: a, acl: newACL(dir), files: newTransfers()}, status.KindInternal},
		{"zero value", &Service{}, status.KindDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := touchCall(tc.svc, marker); rpcKind(err) != tc.kind {
				t.Errorf("Call: %v, want kind %s", err, tc.kind)
			}
			err := tc.svc.Submit(asIdentity("op"), &rpc.SubmitParams{OriginJobID: "o1", Module: "command", Method: "run", Args: map[string]any{"cmd": "touch " + marker}}, &rpc.SubmitReply{})
			if rpcKind(err) != tc.kind {
				t.Errorf("Submit: %v, want kind %s", err, tc.kind)
			}
			err = tc.svc.WriteChunk(asIdentity("op"), &rpc.WriteChunkParams{TransferID: "t1", Path: marker, Data: []byte("x"), Final: true}, &rpc.WriteChunkReply{})
			if rpcKind(err) != tc.kind {
				t.Errorf("WriteChunk: %v, want kind %s", err, tc.kind)
			}
			if err := tc.svc.ReadChunk(asIdentity("op"), &rpc.ReadChunkParams{Path: "/etc/hostname", Length: 10}, &rpc.ReadChunkReply{}); rpcKind(err) != tc.kind {
				t.Errorf("ReadChunk: %v, want kind %s", err, tc.kind)
			}
			if exists(marker) {
				t.Fatal("a refused call ran")
			}
		})
	}
	if js, err := a.list(10, ""); err != nil || len(js) != 0 {
		t.Errorf("jobs after refused submits: %+v, %v", js, err)
	}
}

func mustOpenAudit(t *testing.T, dir string) *auditLog {
	t.Helper()
	audit, err := openAudit(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { audit.Close() })
	return audit
}

// TestServerNeedsStateDirAndOpen: a minion without a state directory (so
// without an access list and an audit log) does not start, and its
// handler serves nothing before Open.
func TestServerNeedsStateDirAndOpen(t *testing.T) {
	b := certstest.NewCA(t).Minion("web1")
	if _, err := New(Config{Bundle: b}); !errors.Is(err, ErrNoStateDir) {
		t.Errorf("New without a state directory: %v, want ErrNoStateDir", err)
	}
	srv, err := New(Config{Bundle: b, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if h, err := srv.handler(); err == nil || h != nil {
		t.Errorf("handler before Open: %v, %v; want an error and no handler", h, err)
	}
}

// fullDisk is a pretend file system for the audit log: writes past free
// bytes are cut short with ENOSPC, and room says what statfs would.
type fullDisk struct {
	mu       sync.Mutex
	free     int64
	truncate bool  // whether cutting the file back works
	room     error // what the room check answers
}

type diskFile struct {
	*os.File
	d *fullDisk
}

func (f diskFile) Write(p []byte) (int, error) {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	n, err := f.File.Write(p[:min(int64(len(p)), max(f.d.free, 0))])
	f.d.free -= int64(n)
	if err == nil && n < len(p) {
		err = syscall.ENOSPC
	}
	return n, err
}

func (f diskFile) Truncate(size int64) error {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	if !f.d.truncate {
		return syscall.EIO
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := f.File.Truncate(size); err != nil {
		return err
	}
	f.d.free += fi.Size() - size
	return nil
}

func (d *fullDisk) set(free int64, room error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.free, d.room = free, room
}

func (d *fullDisk) audit(t *testing.T, dir string) *auditLog {
	t.Helper()
	a := &auditLog{path: filepath.Join(dir, AuditFile), maxSize: maxAuditSize,
		openFile: func(path string) (auditFile, error) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
			if err != nil {
				return nil, err
			}
			return diskFile{f, d}, nil
		},
		room: func(string, int64, int64) error {
			d.mu.Lock()
			defer d.mu.Unlock()
			return d.room
		},
	}
	if err := a.open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// TestAuditFullDisk: the reviewer's full disk. A call that cannot be
// audited is refused and runs nothing; a line cut short by the disk is
// never glued to the next one; once there is room again, every line
// written parses and 'minion audit' shows every call.
func TestAuditFullDisk(t *testing.T) {
	for _, truncate := range []bool{true, false} {
		t.Run(fmt.Sprintf("truncate=%v", truncate), func(t *testing.T) {
			dir := t.TempDir()
			d := &fullDisk{free: 1 << 20, truncate: truncate}
			jobs := newAsync(t, dir)
			defer jobs.Close()
			svc := &Service{Logger: newTestLogger(t), Registry: builtin.Registry(), jobs: jobs, acl: newACL(dir), audit: d.audit(t, dir), files: newTransfers()}
			marker := func(i int) string { return filepath.Join(dir, fmt.Sprintf("ran-%d", i)) }

			for i := range 2 {
				if err := touchCall(svc, marker(i)); err != nil {
					t.Fatal(err)
				}
			}
			// The disk fills while a call runs, after it was let run: its
			// line is cut 40 bytes in. It ran, and says so.
			d.set(40, nil)
			if err := touchCall(svc, marker(2)); err != nil || !exists(marker(2)) {
				t.Fatalf("the call during which the disk filled: %v, ran %v", err, exists(marker(2)))
			}
			// Full, as the file system tells: 10 calls refused, none run.
			d.set(0, fmt.Errorf("%s: %w", dir, syscall.ENOSPC))
			refused := 0
			for i := 10; i < 20; i++ {
				err := touchCall(svc, marker(i))
				if rpcKind(err) == status.KindInternal && strings.Contains(err.Error(), "cannot write its audit log") && strings.Contains(err.Error(), "no space left") {
					refused++
				} else {
					t.Errorf("call %d on a full disk: %v, want kind internal saying the audit log cannot be written", i, err)
				}
				if exists(marker(i)) {
					t.Errorf("call %d ran while its audit line could not be written", i)
				}
			}
			err := svc.Submit(asIdentity("op"), &rpc.SubmitParams{OriginJobID: "o1", Module: "command", Method: "run", Args: map[string]any{"cmd": "touch " + marker(30)}}, &rpc.SubmitReply{})
			if rpcKind(err) != status.KindInternal {
				t.Errorf("Submit on a full disk: %v, want kind internal", err)
			}
			if err := svc.Cancel(asIdentity("op"), &rpc.CancelParams{JobID: "x"}, &rpc.CancelReply{}); rpcKind(err) != status.KindInternal {
				t.Errorf("Cancel on a full disk: %v, want kind internal", err)
			}
			if js, _ := jobs.list(10, ""); len(js) != 0 {
				t.Errorf("a Submit on a full disk made a job: %+v", js)
			}
			// Room again.
			d.set(1<<20, nil)
			for i := 40; i < 43; i++ {
				if err := touchCall(svc, marker(i)); err != nil || !exists(marker(i)) {
					t.Fatalf("call %d with room again: %v", i, err)
				}
			}

			data, err := os.ReadFile(filepath.Join(dir, AuditFile))
			if err != nil {
				t.Fatal(err)
			}
			var bad [][]byte
			for _, line := range bytes.Split(data, []byte("\n")) {
				if len(line) > 0 && !json.Valid(line) {
					bad = append(bad, line)
				}
			}
			// Cut back, nothing of the torn line is left; else it stands
			// alone on its line, and the next line is whole.
			if truncate && len(bad) != 0 || !truncate && (len(bad) != 1 || len(bad[0]) != 40) {
				t.Errorf("lines that do not parse: %q", bad)
			}
			es, err := ReadAudit(dir, 0)
			if err != nil {
				t.Fatal(err)
			}
			// 2 before the disk filled, the one that says how many were
			// lost (the call during which it filled, 10 refused calls, a
			// Submit and a Cancel), 3 after.
			if len(es) != 6 {
				t.Fatalf("minion audit: %d entries, want 6:\n%s", len(es), data)
			}
			for i, e := range es {
				if i == 2 {
					if e.RPC != "audit" || e.Outcome != "internal" || !strings.HasPrefix(e.Message, "13 entries could not be written") {
						t.Errorf("entry %d: %+v, want the one saying 13 entries could not be written", i, e)
					}
					continue
				}
				if e.Call != "command.run" || e.Outcome != "ok" || e.Identity != "op" {
					t.Errorf("entry %d: %+v", i, e)
				}
			}
			t.Logf("audit.log: %d bytes, %d entries, %d calls refused, %d torn lines left", len(data), len(es), refused, len(bad))
		})
	}
}

// TestAuditLineGluedToATornOne: a log written before torn lines were cut
// back (the torn start of an entry with the next entry on the same line)
// still shows the whole entry.
func TestAuditLineGluedToATornOne(t *testing.T) {
	dir := t.TempDir()
	log := `{"time":"2026-12-01T10:00:00Z","identity":"a","outcome":"ok"}` + "\n" +
		`{"time":"2026-12-01T10:00:01Z","identity":"b","rp` +
		`{"time":"2026-12-01T10:00:02Z","identity":"c","outcome":"ok"}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, AuditFile), []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	es, err := ReadAudit(dir, 0)
	if err != nil || len(es) != 2 || es[0].Identity != "a" || es[1].Identity != "c" {
		t.Fatalf("ReadAudit: %+v, %v; want the entries of a and c", es, err)
	}
	// Opened again, the log knows it ends mid-line: its next line starts
	// on a new one.
	if err := os.WriteFile(filepath.Join(dir, AuditFile), []byte(log+`{"time":"2026-12-01T10:00:03Z","iden`), 0o600); err != nil {
		t.Fatal(err)
	}
	a := mustOpenAudit(t, dir)
	if err := a.record(AuditEntry{Identity: "d", RPC: "Minion.Call", Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	if es, err := ReadAudit(dir, 0); err != nil || len(es) != 3 || es[2].Identity != "d" {
		t.Fatalf("ReadAudit after a write to a log ending mid-line: %+v, %v", es, err)
	}
}

// Every entry fits in maxAuditEntry, however its fields are filled.
func TestAuditEntryBound(t *testing.T) {
	worst := strings.Repeat("\x01", 4<<10)
	e := AuditEntry{Identity: worst, Via: worst, Remote: worst, RPC: worst, Call: worst, ArgsSHA256: worst, JobID: worst, OriginJobID: worst, Outcome: worst, Message: worst, DurationMS: -1 << 62}
	for _, f := range []*string{&e.Identity, &e.Via, &e.Remote, &e.RPC, &e.Call, &e.ArgsSHA256, &e.JobID, &e.OriginJobID, &e.Outcome} {
		*f = truncateUTF8(*f, maxAuditField)
	}
	e.Message = truncateUTF8(e.Message, maxAuditMessage)
	line, err := json.Marshal(e)
	if err != nil || len(line)+2 > maxAuditEntry {
		t.Errorf("the longest entry is %d bytes (%v), over maxAuditEntry %d", len(line)+2, err, maxAuditEntry)
	}
}

// An auditLog's zero value refuses rather than panics or records
// nowhere.
func TestAuditLogZeroValue(t *testing.T) {
	var a auditLog
	if err := a.ready(); status.KindOf(err) != status.KindInternal {
		t.Errorf("ready: %v, want kind internal", err)
	}
	if err := a.record(AuditEntry{RPC: "Minion.Call"}); err == nil {
		t.Error("record into no file: no error")
	}
}

// TestAuditWriteFailsWithRoomLeft: writes that fail while the file
// system seems to have room (an I/O error, a read-only remount): after
// the first failure, calls are refused until a line can be written again,
// and that line says how many entries were lost.
func TestAuditWriteFailsWithRoomLeft(t *testing.T) {
	dir := t.TempDir()
	d := &fullDisk{free: 0, truncate: true}
	jobs := newAsync(t, dir)
	defer jobs.Close()
	svc := &Service{Logger: newTestLogger(t), Registry: builtin.Registry(), jobs: jobs, acl: newACL(dir), audit: d.audit(t, dir), files: newTransfers()}
	marker := func(i int) string { return filepath.Join(dir, fmt.Sprintf("ran-%d", i)) }
	// The first failure is only known once the call has run.
	if err := touchCall(svc, marker(0)); err != nil || !exists(marker(0)) {
		t.Fatalf("first call: %v", err)
	}
	for i := 1; i < 4; i++ {
		if err := touchCall(svc, marker(i)); rpcKind(err) != status.KindInternal || exists(marker(i)) {
			t.Errorf("call %d after a failed write: %v, ran %v; want refused, not run", i, err, exists(marker(i)))
		}
	}
	d.set(1<<20, nil)
	if err := touchCall(svc, marker(4)); err != nil || !exists(marker(4)) {
		t.Fatalf("call once writes work: %v", err)
	}
	es, err := ReadAudit(dir, 0)
	if err != nil || len(es) != 2 || es[0].RPC != "audit" || !strings.HasPrefix(es[0].Message, "4 entries could not be written") || es[1].Call != "command.run" {
		t.Fatalf("minion audit: %+v, %v; want the line saying 4 entries were lost, then the call", es, err)
	}
}
