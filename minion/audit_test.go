package minion

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/certs/certstest"
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

// auditOf returns the audit entries of rpcName.
func auditOf(t *testing.T, dir, rpcName string) []AuditEntry {
	t.Helper()
	es, err := ReadAudit(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []AuditEntry
	for _, e := range es {
		if e.RPC == rpcName {
			out = append(out, e)
		}
	}
	return out
}

// Every ReadChunk, the first and last chunk of each WriteChunk transfer,
// and Minion.UpdateCRL are audited.
func TestAuditTransfersAndCRL(t *testing.T) {
	dir := t.TempDir()
	svc := auditedService(t, dir)
	svc.rev, _ = loadRevocation("", certstest.NewCA(t).Cert, newTestLogger(t))
	files := t.TempDir()
	src := filepath.Join(files, "src")
	if err := os.WriteFile(src, []byte("0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 8} {
		if err := svc.ReadChunk(asIdentity("op"), &rpc.ReadChunkParams{Path: src, Offset: off, Length: 8}, &rpc.ReadChunkReply{}); err != nil {
			t.Fatal(err)
		}
	}
	if es := auditOf(t, dir, "Minion.ReadChunk"); len(es) != 2 || !strings.Contains(es[1].Message, "offset 8") {
		t.Errorf("two ReadChunks audited as %+v, want two entries", es)
	}

	dst := filepath.Join(files, "dst")
	data := []byte("0123456789abcdef")
	sum := sha256.Sum256(data)
	for i, off := range []int64{0, 5, 10} {
		end := min(off+5, 16)
		if i == 2 {
			end = 16
		}
		p := &rpc.WriteChunkParams{TransferID: "t1", Path: dst, Offset: off, Data: data[off:end], Final: i == 2, Mode: 0o600}
		if p.Final {
			p.SHA256 = hex.EncodeToString(sum[:])
		}
		if err := svc.WriteChunk(asIdentity("op"), p, &rpc.WriteChunkReply{}); err != nil {
			t.Fatal(err)
		}
	}
	if es := auditOf(t, dir, "Minion.WriteChunk"); len(es) != 2 || !strings.Contains(es[0].Message, "offset 0") || !strings.Contains(es[1].Message, "last chunk") {
		t.Errorf("a transfer of three chunks audited as %+v, want its first and its last", es)
	}

	err := svc.UpdateCRL(asIdentity("op"), &rpc.UpdateCRLParams{CRL: []byte("not a CRL")}, &rpc.UpdateCRLReply{})
	if es := auditOf(t, dir, "Minion.UpdateCRL"); err == nil || len(es) != 1 || es[0].Outcome != "bad_args" || len(es[0].ArgsSHA256) != 64 {
		t.Errorf("UpdateCRL (%v) audited as %+v, want one bad_args entry with the list's digest", err, es)
	}
}

// One identity may have at most maxTransfersPerIdentity transfers in
// progress; others still may start theirs.
func TestTransfersPerIdentity(t *testing.T) {
	tr := newTransfers()
	defer tr.Close()
	dir := t.TempDir()
	start := func(caller string, i int) error {
		_, err := tr.write(caller, &rpc.WriteChunkParams{TransferID: caller + strconv.Itoa(i), Path: filepath.Join(dir, caller+strconv.Itoa(i)), Data: []byte("x")})
		return err
	}
	for i := range maxTransfersPerIdentity {
		if err := start("greedy", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := start("greedy", maxTransfersPerIdentity); err == nil || !strings.Contains(err.Error(), "too many transfers of greedy") {
		t.Errorf("transfer %d of one identity: %v, want refused", maxTransfersPerIdentity+1, err)
	}
	if err := start("other", 0); err != nil {
		t.Errorf("another identity's transfer: %v", err)
	}
}
