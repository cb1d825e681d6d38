package minion

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// auditedService returns a Service with the async jobs, ACL and audit
// log of a state directory.
func auditedService(t *testing.T, dir string) *Service {
	t.Helper()
	audit, err := openAudit(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { audit.Close() })
	a := newAsync(t, dir)
	t.Cleanup(func() { a.Close() })
	return &Service{Logger: newTestLogger(t), jobs: a, acl: newACL(dir), audit: audit, files: newTransfers()}
}

// Ill-formed module and method names are refused as bad_args before the
// ACL is consulted, and however long, they leave a short audit line
// that 'minion audit' reads back.
func TestIllFormedNamesAndLongAuditFields(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ACLFile), []byte("*:\n"), 0o600); err != nil { // nothing allowed
		t.Fatal(err)
	}
	svc := auditedService(t, dir)
	long := strings.Repeat("x", 2<<20)
	for _, tt := range []struct{ module, method string }{
		{long, "ping"}, {"test", long}, {"Test", "ping"}, {"test", "ping!"}, {"", "ping"}, {"te.st", "ping"},
	} {
		err := svc.Call(asIdentity("op"), &rpc.CallParams{Module: tt.module, Method: tt.method}, &rpc.CallReply{})
		if rpcKind(err) != status.KindBadArgs || len(err.Error()) > 1024 {
			t.Errorf("Call %.20q.%.20q: %.200v, want a short bad_args (not denied)", tt.module, tt.method, err)
		}
		err = svc.Submit(asIdentity("op"), &rpc.SubmitParams{OriginJobID: "o", Module: tt.module, Method: tt.method}, &rpc.SubmitReply{})
		if rpcKind(err) != status.KindBadArgs {
			t.Errorf("Submit %.20q.%.20q: %.200v, want bad_args (not denied)", tt.module, tt.method, err)
		}
	}
	if err := os.Remove(filepath.Join(dir, ACLFile)); err != nil {
		t.Fatal(err)
	}
	err := svc.Submit(asIdentity("op"), &rpc.SubmitParams{OriginJobID: long, Module: "test", Method: "ping"}, &rpc.SubmitReply{})
	if rpcKind(err) != status.KindBadArgs {
		t.Errorf("Submit with a 2 MB origin_job_id: %.200v, want bad_args", err)
	}
	svc.Cancel(asIdentity("op"), &rpc.CancelParams{JobID: long}, &rpc.CancelReply{})
	svc.audit.Close()
	data, err := os.ReadFile(filepath.Join(dir, AuditFile))
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if len(line) > 4<<10 {
			t.Errorf("audit line %d is %d bytes long", i+1, len(line))
		}
	}
	es, err := ReadAudit(dir, 0)
	if err != nil || len(es) != 14 {
		t.Fatalf("ReadAudit: %d entries, %v; want 14", len(es), err)
	}
}

// ReadAudit skips a line too long to be an entry instead of failing.
func TestReadAuditSkipsLongLines(t *testing.T) {
	dir := t.TempDir()
	lines := `{"identity":"a","outcome":"ok"}` + "\n" +
		`{"identity":"` + strings.Repeat("b", 2<<20) + `","outcome":"ok"}` + "\n" +
		"not JSON\n" +
		`{"identity":"c","outcome":"ok"}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, AuditFile), []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	es, err := ReadAudit(dir, 0)
	if err != nil || len(es) != 2 || es[0].Identity != "a" || es[1].Identity != "c" {
		t.Fatalf("ReadAudit: %+v, %v; want the entries of a and c", es, err)
	}
}

// The log keeps five rotated files, and ReadAudit reads on into them.
func TestAuditRotation(t *testing.T) {
	dir := t.TempDir()
	a, err := openAudit(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.maxSize = 1 << 10
	const n = 100
	for i := range n {
		if err := a.record(AuditEntry{Identity: "op", RPC: "Minion.Call", Call: "test.ping", Outcome: "ok", JobID: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= auditKeep; i++ {
		if _, err := os.Stat(rotated(filepath.Join(dir, AuditFile), i)); err != nil {
			t.Errorf("rotated file %d: %v", i, err)
		}
	}
	if _, err := os.Stat(rotated(filepath.Join(dir, AuditFile), auditKeep+1)); err == nil {
		t.Errorf("rotated file %d kept", auditKeep+1)
	}
	all, err := ReadAudit(dir, 0)
	if err != nil || len(all) < 5*5 || all[len(all)-1].JobID != strconv.Itoa(n-1) {
		t.Fatalf("ReadAudit(0): %d entries, %v; want those of 6 files, the last one last", len(all), err)
	}
	for i := 1; i < len(all); i++ {
		prev, _ := strconv.Atoi(all[i-1].JobID)
		if cur, _ := strconv.Atoi(all[i].JobID); cur != prev+1 {
			t.Fatalf("entries out of order: %s after %s", all[i].JobID, all[i-1].JobID)
		}
	}
	last, err := ReadAudit(dir, 20)
	if err != nil || len(last) != 20 || last[0].JobID != strconv.Itoa(n-20) {
		t.Fatalf("ReadAudit(20): %d entries from %v, %v", len(last), last[0].JobID, err)
	}
}

// Cancel answers an unknown job and another caller's job in the same
// words, so it does not tell which IDs exist.
func TestCancelOfAnotherCallersJob(t *testing.T) {
	dir := t.TempDir()
	svc := auditedService(t, dir)
	j := finishedJob(t, svc.jobs, "owner", "o1", nil)
	var mine, theirs rpc.CancelReply
	errTheirs := svc.Cancel(asIdentity("other"), &rpc.CancelParams{JobID: j.ID}, &theirs)
	errNone := svc.Cancel(asIdentity("other"), &rpc.CancelParams{JobID: "01a1fe00-0000-7000-8000-000000000000"}, &mine)
	if rpcKind(errTheirs) != status.KindLost || rpcKind(errNone) != status.KindLost {
		t.Fatalf("cancel of another's job: %v; of no job: %v; want both lost", errTheirs, errNone)
	}
	if a, b := strings.ReplaceAll(errTheirs.Error(), j.ID, "ID"), strings.ReplaceAll(errNone.Error(), "01a1fe00-0000-7000-8000-000000000000", "ID"); a != b {
		t.Errorf("another's job: %q; no job: %q; want the same words", a, b)
	}
}
