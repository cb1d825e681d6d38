package minion

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// finishedJob records a FINISHED job of caller in a's store, with output
// in its spool, without running anything.
func finishedJob(t testing.TB, a *asyncJobs, caller, origin string, output []byte) Job {
	t.Helper()
	j, _, err := a.store.submit(caller, origin, nil, func(id string) Job {
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

// asIdentity returns a request as the overlord identity name would make
// it, for calling Service methods directly.
func asIdentity(name string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, rpc.Path, nil)
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: name}}}}
	r.RemoteAddr = "127.0.0.1:40000"
	return withCaller(r, who{identity: name})
}

func TestStatusJobIDLimits(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	svc := &Service{Logger: newTestLogger(t), jobs: a}
	j := finishedJob(t, a, "tester", "o1", []byte("out"))
	ids := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = "no-such-job-" + strconv.Itoa(i)
		}
		return out
	}
	repeat := make([]string, MaxStatusJobs)
	for i := range repeat {
		repeat[i] = j.ID
	}
	tests := []struct {
		name string
		p    rpc.StatusParams
		want int // jobs in the reply; -1: bad_args
	}{
		{"at the limit", rpc.StatusParams{JobIDs: ids(MaxStatusJobs), MaxOutput: -1}, MaxStatusJobs},
		{"over the limit", rpc.StatusParams{JobIDs: ids(MaxStatusJobs + 1)}, -1},
		{"repeats", rpc.StatusParams{JobIDs: repeat}, 1},
		{"long poll at its limit", rpc.StatusParams{JobIDs: append(ids(MaxWaitJobs-1), j.ID), WaitMS: 1}, MaxWaitJobs},
		{"long poll over its limit", rpc.StatusParams{JobIDs: ids(MaxWaitJobs + 1), WaitMS: 1}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reply rpc.StatusReply
			err := svc.Status(asIdentity("tester"), &tt.p, &reply)
			if tt.want < 0 {
				if err == nil || !strings.Contains(err.Error(), "job_ids") {
					t.Fatalf("got %d jobs, %v; want bad_args", len(reply.Jobs), err)
				}
				return
			}
			if err != nil || len(reply.Jobs) != tt.want {
				t.Fatalf("got %d jobs, %v; want %d", len(reply.Jobs), err, tt.want)
			}
		})
	}
}

// However big the jobs' results and output, a reply stays within
// MaxStatusReply bytes of JSON; the first job keeps its result, the ones
// that do not fit are marked truncated.
func TestStatusReplyBudget(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	const limit = 1 << 20
	a.maxReply = limit
	// Output of control bytes: each takes 6 bytes of JSON.
	nuls := make([]byte, 100<<10)
	result, _ := json.Marshal(strings.Repeat("r", 100<<10))
	var ids []string
	for i := range 12 {
		j := finishedJob(t, a, "tester", "o"+strconv.Itoa(i), nuls)
		if _, err := a.store.update(j.ID, func(j *Job) bool { j.Result = result; return true }); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	for _, p := range []rpc.StatusParams{
		{JobIDs: ids, MaxOutput: 200 << 10},
		{JobIDs: ids, MaxOutput: -1},
	} {
		st, err := a.status(&p, "tester")
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(rpc.StatusReply{Jobs: st})
		// Every job is listed, even with its result left out.
		if len(data) > limit+len(ids)*(maxCutMessage+512) {
			t.Errorf("max_output %d: a reply of %d bytes, want at most %d", p.MaxOutput, len(data), limit)
		}
		if st[0].Result == nil || st[len(st)-1].Result != nil || !st[len(st)-1].Truncated {
			t.Errorf("max_output %d: first result %d bytes, last %d bytes truncated %v; want the first whole, the last left out",
				p.MaxOutput, len(st[0].Result), len(st[len(st)-1].Result), st[len(st)-1].Truncated)
		}
		for i, s := range st {
			if s.Truncated && s.NextOffset != int64(len(s.Output)) && p.MaxOutput > 0 {
				t.Errorf("job %d: %d bytes of output, next_offset %d", i, len(s.Output), s.NextOffset)
			}
			if !s.Truncated && s.Result == nil {
				t.Errorf("job %d: result left out but not marked truncated", i)
			}
		}
	}
}

func TestFitJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "a\x00b<c>&d\"e\\f\ng", "héllo wörld", "bad \xff utf-8", "\u2028 x"} {
		data, _ := json.Marshal(s)
		if n, size := fitJSON(s, 1<<20); n != len(s) || size+2 != len(data) {
			t.Errorf("%q: fits %d bytes in %d; want %d in %d", s, n, size+2, len(s), len(data))
		}
		for room := 2; room < len(data); room++ {
			n, size := fitJSON(s, room)
			cut, _ := json.Marshal(s[:n])
			if len(cut) > room || size+2 != len(cut) {
				t.Errorf("%q in %d: %q takes %d (said %d)", s, room, s[:n], len(cut), size+2)
			}
		}
	}
}
