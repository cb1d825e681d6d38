package minion

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// finishedJob records a FINISHED job of caller in a's store, with output
// in its spool, without running anything.
func finishedJob(t testing.TB, a *asyncJobs, caller, origin string, output []byte) Job {
	t.Helper()
	j, _, err := a.store.submit(caller, origin, func(id string) Job {
		now := time.Now().UTC()
		return Job{ID: id, OriginJobID: origin, Caller: caller, Module: "test", Method: "ping",
			State: status.Finished, OK: true, CreatedAt: now, FinishedAt: &now}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(a.dir(j.ID), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.dir(j.ID), outputFile), output, 0o600); err != nil {
		t.Fatal(err)
	}
	return j
}

// A huge max_output allocates no more than the output holds.
func TestStatusMaxOutputIsClamped(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	j := finishedJob(t, a, "tester", "o1", []byte("four"))

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	st, err := a.status(&rpc.StatusParams{JobIDs: []string{j.ID}, MaxOutput: 512 << 20}, "tester")
	runtime.ReadMemStats(&after)
	if err != nil || st[0].Output != "four" || st[0].NextOffset != 4 || st[0].Truncated {
		t.Fatalf("status: %+v, %v; want output \"four\", next_offset 4", st, err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Errorf("max_output 512 MiB for 4 bytes of output allocated %d MiB", grew>>20)
	}
	// 1 TiB: the daemon answers rather than dies.
	st, err = a.status(&rpc.StatusParams{JobIDs: []string{j.ID}, MaxOutput: 1 << 40, FromOffset: 1}, "tester")
	if err != nil || st[0].Output != "our" || st[0].NextOffset != 4 {
		t.Fatalf("max_output 1 TiB: %+v, %v", st, err)
	}
}

// One job gets at most MaxStatusChunk; a reply at most MaxStatusOutput,
// and the jobs past it are marked truncated with the offset to ask again
// from.
func TestStatusOutputBudget(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	big := bytes.Repeat([]byte("x"), 2<<20)
	var ids []string
	for i := range 10 {
		ids = append(ids, finishedJob(t, a, "tester", "o"+strconv.Itoa(i), big).ID)
	}
	st, err := a.status(&rpc.StatusParams{JobIDs: ids, MaxOutput: 4 << 20, FromOffset: 10}, "tester")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for i, s := range st {
		total += len(s.Output)
		full := i < MaxStatusOutput/MaxStatusChunk
		switch {
		case full && (len(s.Output) != MaxStatusChunk || s.NextOffset != 10+MaxStatusChunk || s.Truncated):
			t.Errorf("job %d: %d bytes, next %d, truncated %v; want %d bytes from offset 10", i, len(s.Output), s.NextOffset, s.Truncated, MaxStatusChunk)
		case !full && (s.Output != "" || s.NextOffset != 10 || !s.Truncated):
			t.Errorf("job %d: %d bytes, next %d, truncated %v; want none, next_offset 10, truncated", i, len(s.Output), s.NextOffset, s.Truncated)
		}
	}
	if total > MaxStatusOutput {
		t.Errorf("one reply carried %d bytes of output, want at most %d", total, MaxStatusOutput)
	}
}
