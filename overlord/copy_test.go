package overlord_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/overlordhq/overlord/minion/miniontest"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

func prepare(t *testing.T, o *overlord.Overlord, target, method string) *overlord.Prepared {
	t.Helper()
	p, err := o.Prepare(overlord.CallSpec{Target: target, Module: "file", Method: method})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A 5 MB random file copied to three minions and fetched back is the same
// byte for byte, with its mode, and the copies are recorded as jobs.
func TestCopyAndFetch(t *testing.T) {
	t.Parallel()
	fleet := miniontest.Start(t, miniontest.Config{Minions: 3})
	o := fleet.Overlord
	dir := t.TempDir()
	src := filepath.Join(dir, "big.bin")
	data := make([]byte, 2_500_000) // three chunks, the last partial
	rand.Read(data)
	if err := os.WriteFile(src, data, 0o640); err != nil {
		t.Fatal(err)
	}
	// In-process minions share this host: each gets its own destination.
	for _, name := range fleet.Names {
		os.MkdirAll(filepath.Join(dir, "on-"+name), 0o755)
	}
	ctx := context.Background()
	for _, name := range fleet.Names {
		job, err := o.Copy(ctx, prepare(t, o, name, "cp"), src, filepath.Join(dir, "on-"+name)+"/", nil)
		if err != nil || job.Summary.OK != 1 {
			t.Fatalf("cp to %s: %+v %v", name, job.Minions, err)
		}
		got, err := os.ReadFile(filepath.Join(dir, "on-"+name, "big.bin"))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("copy on %s differs (%v)", name, err)
		}
		if fi, _ := os.Stat(filepath.Join(dir, "on-"+name, "big.bin")); fi.Mode().Perm() != 0o640 {
			t.Errorf("copy on %s has mode %v, want 0640", name, fi.Mode().Perm())
		}
		if rec, _, err := o.Store.Job(job.JobID); err != nil || rec.Module != "file" || rec.Method != "cp" || rec.State != status.Finished {
			t.Errorf("cp job recorded as %+v (%v)", rec, err)
		}
	}

	out := filepath.Join(dir, "fetched")
	os.Mkdir(out, 0o755)
	job, err := o.Fetch(ctx, prepare(t, o, "*", "fetch"), src, out, nil)
	if err != nil || job.Summary.OK != 3 {
		t.Fatalf("fetch: %+v %v", job.Minions, err)
	}
	for _, name := range fleet.Names {
		got, err := os.ReadFile(filepath.Join(out, name, "big.bin"))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("fetched from %s differs (%v)", name, err)
		}
		var fr overlord.FileResult
		json.Unmarshal(job.Minions[name].Result, &fr)
		if fr.Size != int64(len(data)) || fr.Mode != "0640" {
			t.Errorf("fetch result from %s: %+v", name, fr)
		}
	}
}

func TestCopyFailuresLeaveNothing(t *testing.T) {
	fleet := miniontest.Start(t, miniontest.Config{Minions: 1})
	o := fleet.Overlord
	dir := t.TempDir()
	src := filepath.Join(dir, "f")
	os.WriteFile(src, []byte("hello"), 0o600)
	ctx := context.Background()

	job, _ := o.Copy(ctx, prepare(t, o, "*", "cp"), src, filepath.Join(dir, "no", "such", "dir", "f"), nil)
	if r := job.Minions[fleet.Names[0]]; r.OK || r.Error == nil || r.Error.Kind != status.KindModuleError {
		t.Errorf("copy into a missing directory: %+v, want module_error", r)
	}
	job, _ = o.Fetch(ctx, prepare(t, o, "*", "fetch"), filepath.Join(dir, "missing"), dir, nil)
	if r := job.Minions[fleet.Names[0]]; r.OK {
		t.Errorf("fetch of a missing file: %+v, want a failure", r)
	}
	if _, err := os.Lstat(filepath.Join(dir, fleet.Names[0])); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed fetch left its directory %s behind (%v)", filepath.Join(dir, fleet.Names[0]), err)
	}
	fresh := filepath.Join(dir, "fresh")
	o.Fetch(ctx, prepare(t, o, "*", "fetch"), filepath.Join(dir, "missing"), fresh, nil)
	if _, err := os.Lstat(fresh); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed fetch left the directory it made, %s (%v)", fresh, err)
	}
	// A directory that was there before is kept, with what it holds.
	keep := filepath.Join(dir, fleet.Names[0])
	os.Mkdir(keep, 0o755)
	os.WriteFile(filepath.Join(keep, "other"), []byte("x"), 0o600)
	o.Fetch(ctx, prepare(t, o, "*", "fetch"), filepath.Join(dir, "missing"), dir, nil)
	if ents, err := os.ReadDir(keep); err != nil || len(ents) != 1 {
		t.Errorf("a failed fetch into an existing directory: %v, %d entries, want the 1 that was there", err, len(ents))
	}
	if _, err := o.Copy(ctx, prepare(t, o, "*", "cp"), dir, "/tmp/x", nil); err == nil {
		t.Error("copying a directory was accepted")
	}
}

func TestSplitRemote(t *testing.T) {
	for in, ok := range map[string]bool{"web*:/etc/x": true, "@db:/x/": true, "web1:x": false, ":/x": false, "web1:": false, "/x": false,
		"failed:0190ab:/etc/x": true, "web[1-3,5]:/x": true} {
		if _, _, err := overlord.SplitRemote(in); (err == nil) != ok {
			t.Errorf("SplitRemote(%q): %v, want ok=%v", in, err, ok)
		}
	}
	if tgt, remote, _ := overlord.SplitRemote("failed:0190ab,!web3:/etc/x:y"); tgt != "failed:0190ab,!web3" || remote != "/etc/x:y" {
		t.Errorf("SplitRemote(failed:ID,!web3:/etc/x:y) = %q, %q", tgt, remote)
	}
}
