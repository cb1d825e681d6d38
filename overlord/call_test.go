package overlord_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/minion"
	"github.com/overlordhq/overlord/minion/miniontest"
	"github.com/overlordhq/overlord/modules/command"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
	"github.com/overlordhq/overlord/target"
)

// startMinion registers name with o and serves it on loopback with the
// bundle o issued, as `minion init` and `minion serve` would.
func startMinion(t *testing.T, o *overlord.Overlord, name string) {
	t.Helper()
	ln, err := miniontest.Listen() // its address is the minion's
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), name+".pem")
	if _, err := o.AddMinion(name, ln.Addr().String(), bundle, certs.ECDSA); err != nil {
		ln.Close()
		t.Fatal(err)
	}
	b, err := certs.ReadBundle(bundle)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	miniontest.Serve(t, minion.Config{Bundle: b, Listener: ln})
}

// addDeadMinion registers name at a loopback port nobody listens on.
func addDeadMinion(t *testing.T, o *overlord.Overlord, name string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := o.AddMinion(name, addr, filepath.Join(t.TempDir(), name+".pem"), certs.ECDSA); err != nil {
		t.Fatal(err)
	}
}

func TestPrepare(t *testing.T) {
	o := newOverlord(t)
	for _, n := range []string{"web2", "web1", "db1"} {
		if _, err := o.AddMinion(n, "h:1", filepath.Join(t.TempDir(), n+".pem"), certs.ECDSA); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Store.AddToGroup("db", []string{"db1"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		spec       overlord.CallSpec
		minions    []string
		args       map[string]any
		positional []any
	}{
		{"built-in bound here", overlord.CallSpec{Target: "web*", Module: "command", Method: "run", Words: []string{"FOO=1 make"}},
			[]string{"web1", "web2"}, map[string]any{"cmd": "FOO=1 make", "max_output": command.DefaultMaxOutput}, nil},
		{"number kept as text", overlord.CallSpec{Target: "*", Module: "command", Method: "run", Words: []string{"42"}},
			[]string{"db1", "web1", "web2"}, map[string]any{"cmd": "42", "max_output": command.DefaultMaxOutput}, nil},
		{"group", overlord.CallSpec{Target: "@db", Module: "test", Method: "ping"},
			[]string{"db1"}, map[string]any{}, nil},
		{"exclusion", overlord.CallSpec{Target: "!web1", Module: "test", Method: "add", Words: []string{"1", "b=2"}},
			[]string{"db1", "web2"}, map[string]any{"a": 1.0, "b": 2.0}, nil},
		{"module only the minions know", overlord.CallSpec{Target: "db1", Module: "pkg", Method: "install", Words: []string{"nginx", "version=1.2", "7"}},
			[]string{"db1"}, map[string]any{"version": 1.2}, []any{"nginx", 7.0}},
		{"method of a built-in module it lacks", overlord.CallSpec{Target: "db1", Module: "test", Method: "newer", Words: []string{"x"}},
			[]string{"db1"}, nil, []any{"x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := o.Prepare(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Names(); !reflect.DeepEqual(got, tt.minions) {
				t.Errorf("minions %v, want %v", got, tt.minions)
			}
			if len(p.Args) != 0 || len(tt.args) != 0 {
				if !reflect.DeepEqual(map[string]any(p.Args), tt.args) {
					t.Errorf("args %#v, want %#v", p.Args, tt.args)
				}
			}
			if !reflect.DeepEqual(p.Positional, tt.positional) {
				t.Errorf("positional %#v, want %#v", p.Positional, tt.positional)
			}
			for _, m := range p.Minions {
				if m.Addr != "h:1" || m.Fingerprint == "" {
					t.Errorf("minion %+v lacks its registry record", m)
				}
			}
		})
	}
}

func TestPrepareErrors(t *testing.T) {
	o := newOverlord(t)
	if _, err := o.AddMinion("web1", "h:1", filepath.Join(t.TempDir(), "w.pem"), certs.ECDSA); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		spec    overlord.CallSpec
		wantErr error
		kind    status.Kind
		msg     string
	}{
		{name: "no module", spec: overlord.CallSpec{Target: "*", Method: "ping"}, msg: "want MODULE.METHOD"},
		{name: "no method", spec: overlord.CallSpec{Target: "*", Module: "test"}, msg: "want MODULE.METHOD"},
		{name: "no match", spec: overlord.CallSpec{Target: "db*", Module: "test", Method: "ping"}, wantErr: overlord.ErrNoMatch, msg: `"db*" (1 registered`},
		{name: "only excluded", spec: overlord.CallSpec{Target: "*,!web1", Module: "test", Method: "ping"}, wantErr: overlord.ErrNoMatch},
		{name: "unknown group", spec: overlord.CallSpec{Target: "@web", Module: "test", Method: "ping"}, wantErr: target.ErrUnknownGroup},
		{name: "bad glob", spec: overlord.CallSpec{Target: "web[", Module: "test", Method: "ping"}, msg: "bad glob"},
		{name: "bad args caught before sending", spec: overlord.CallSpec{Target: "*", Module: "test", Method: "add", Words: []string{"1"}},
			kind: status.KindBadArgs, msg: "missing required parameter b"},
		{name: "typo of a module", spec: overlord.CallSpec{Target: "*", Module: "comand", Method: "run", Words: []string{"hostname"}},
			kind: status.KindBadArgs, msg: "did you mean command.run?"},
		{name: "typo of a method", spec: overlord.CallSpec{Target: "*", Module: "test", Method: "pnig"},
			kind: status.KindBadArgs, msg: "did you mean test.ping?"},
		{name: "int rejects 2.5", spec: overlord.CallSpec{Target: "*", Module: "command", Method: "run", Words: []string{"true", "max_output=2.5"}},
			kind: status.KindBadArgs, msg: "parameter max_output: want int"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := o.Prepare(tt.spec)
			if err == nil {
				t.Fatalf("Prepare = %+v", p)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if tt.kind != "" && status.KindOf(err) != tt.kind {
				t.Errorf("error %v, want kind %s", err, tt.kind)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
		})
	}
	if recs, _ := o.Store.ListJobs(jobs.ListOptions{}); len(recs) != 0 {
		t.Errorf("Prepare recorded %d jobs", len(recs))
	}
}

func TestCall(t *testing.T) {
	o := newOverlord(t)
	for _, n := range []string{"web1", "web2", "web3"} {
		startMinion(t, o, n)
	}
	addDeadMinion(t, o, "web4")

	p, err := o.Prepare(overlord.CallSpec{Target: "web*", Module: "test", Method: "echo", Words: []string{`{"hello":"fleet"}`},
		Forks: 2, Timeout: 5 * time.Second, ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]status.Result{}
	job, err := o.Call(context.Background(), p, func(name string, r status.Result) {
		mu.Lock()
		defer mu.Unlock()
		if _, dup := seen[name]; dup {
			t.Errorf("result for %s twice", name)
		}
		seen[name] = r
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 4 {
		t.Errorf("onResult saw %d minions, want 4", len(seen))
	}
	if job.State != status.Finished || job.FinishedAt == nil || job.JobID == "" {
		t.Errorf("job %+v", job)
	}
	if want := (status.Summary{Total: 4, OK: 3, Failed: 1}); job.Summary != want {
		t.Errorf("summary %+v, want %+v", job.Summary, want)
	}
	for _, n := range []string{"web1", "web2", "web3"} {
		r := job.Minions[n]
		if !r.OK || r.State != status.Finished || string(r.Result) != `{"hello":"fleet"}` || r.Error != nil {
			t.Errorf("%s: %+v (result %s)", n, r, r.Result)
		}
	}
	dead := job.Minions["web4"]
	if dead.OK || dead.State != status.Finished || dead.Error == nil || dead.Error.Kind != status.KindUnreachable {
		t.Errorf("web4: %+v", dead)
	}

	// The job is recorded as printed.
	rec, entries, err := o.Store.Job(job.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != status.Finished || rec.Summary != job.Summary || rec.Target != "web*" || rec.Module != "test" || rec.Method != "echo" {
		t.Errorf("stored %+v", rec)
	}
	if rec.Forks != 2 || rec.TimeoutMS != 5000 {
		t.Errorf("stored forks %d timeout %d", rec.Forks, rec.TimeoutMS)
	}
	if !reflect.DeepEqual(entries, job.Minions) {
		t.Errorf("stored entries differ from the returned ones:\n%+v\n%+v", entries, job.Minions)
	}
	// Minions that answered are marked as seen; the dead one is not.
	ms, _ := o.Store.Minions()
	for _, m := range ms {
		if (m.LastSeen != nil) != (m.Name != "web4") {
			t.Errorf("%s LastSeen %v", m.Name, m.LastSeen)
		}
	}
}

func TestCallFailures(t *testing.T) {
	o := newOverlord(t)
	startMinion(t, o, "web1")
	tests := []struct {
		name   string
		spec   overlord.CallSpec
		kind   status.Kind
		result string // substring of the entry's result
	}{
		{"command exits non-zero", overlord.CallSpec{Target: "web1", Module: "command", Method: "run", Words: []string{"echo out; exit 4"}},
			status.KindModuleError, `"exit_code":4`},
		{"command killed at its own timeout keeps its output", overlord.CallSpec{Target: "web1", Module: "command", Method: "run",
			Words: []string{"echo started; sleep 30", "timeout=300ms"}},
			status.KindTimeout, `"stdout":"started\n"`},
		{"module the minion lacks", overlord.CallSpec{Target: "web1", Module: "pkg", Method: "install", Words: []string{"nginx"}},
			status.KindUnknownModule, ""},
		{"method the minion lacks", overlord.CallSpec{Target: "web1", Module: "test", Method: "newer"},
			status.KindUnknownMethod, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := o.Prepare(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			job, err := o.Call(context.Background(), p, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := job.Minions["web1"]
			if r.OK || r.Error == nil || r.Error.Kind != tt.kind {
				t.Fatalf("entry %+v, want kind %s", r, tt.kind)
			}
			if !strings.Contains(string(r.Result), tt.result) {
				t.Errorf("result %s lacks %s", r.Result, tt.result)
			}
			if job.Summary.Failed != 1 || job.Summary.ExitCode() != status.ExitFailed {
				t.Errorf("summary %+v", job.Summary)
			}
		})
	}
}

// A call whose context is already cancelled (Ctrl-C before it started)
// sends nothing: the job is handed over with every minion unsent, for
// its driver to submit.
func TestCallCancelled(t *testing.T) {
	o := newOverlord(t)
	startMinion(t, o, "web1")
	startMinion(t, o, "web2")
	p, err := o.Prepare(overlord.CallSpec{Target: "*", Module: "test", Method: "ping"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	job, err := o.Call(ctx, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, entries, _ := o.Store.Job(job.JobID)
	if rec.State == status.Finished || rec.Summary.Pending != 2 || len(entries) != 2 || rec.Deadline == nil {
		t.Errorf("stored %+v with %d entries", rec, len(entries))
	}
	if !reflect.DeepEqual(rec.Unsent, []string{"web1", "web2"}) {
		t.Errorf("unsent %v, want both minions", rec.Unsent)
	}
}

// A call still running when the wait ends goes on on the minion, and the
// job with it: the driver adopts the minion's job and records its result.
// What ran before and after the wait is one run.
func TestCallOutlivesItsWait(t *testing.T) {
	o := newOverlord(t)
	startMinion(t, o, "web1")
	dir := t.TempDir()
	runs, gate := filepath.Join(dir, "runs"), filepath.Join(dir, "gate")
	// The command waits for the gate, opened once the call has returned.
	cmd := fmt.Sprintf("echo run >> %s; echo started; while [ ! -e %s ]; do sleep 0.05; done; echo finished", runs, gate)
	p, err := o.Prepare(overlord.CallSpec{Target: "web1", Module: "command", Method: "run", Words: []string{cmd}, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	job, err := o.Call(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := job.Minions["web1"]
	if job.State == status.Finished || r.State != status.Running || r.MinionJobID == "" {
		t.Fatalf("job %s, entry %+v: want RUNNING with the minion's job", job.State, r)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	driveHere(t, o, job.JobID)
	rec, entries, err := o.Store.Job(job.JobID)
	if err != nil {
		t.Fatal(err)
	}
	e := entries["web1"]
	if rec.State != status.Finished || !e.OK || !strings.Contains(string(e.Result), `"stdout":"started\nfinished\n"`) {
		t.Fatalf("job %s, entry %+v %s", rec.State, e, e.Result)
	}
	if got, _ := os.ReadFile(runs); string(got) != "run\n" {
		t.Errorf("the command ran %q times, want once", got)
	}
}

// driveHere drives job id in this process, once the driver the call
// started (DriverCommand, which does nothing) has let the job go.
func driveHere(t *testing.T, o *overlord.Overlord, id string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); o.Jobs.Alive(id); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the job's driver lock is still held")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := o.Drive(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
}

// interruptWhen returns a context cancelled (Ctrl-C) once file exists, or
// after a minute.
func interruptWhen(file string) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(file); err == nil {
				break
			}
		}
		cancel()
	}()
	return ctx
}

// Ctrl-C while a call runs: the calls already sent go on, and the driver
// adopts them without running them again.
func TestCallInterrupted(t *testing.T) {
	o := newOverlord(t)
	startMinion(t, o, "web1")
	dir := t.TempDir()
	runs, gate := filepath.Join(dir, "runs"), filepath.Join(dir, "gate")
	cmd := fmt.Sprintf("echo run >> %s; while [ ! -e %s ]; do sleep 0.05; done; echo finished", runs, gate)
	p, err := o.Prepare(overlord.CallSpec{Target: "web1", Module: "command", Method: "run", Words: []string{cmd}})
	if err != nil {
		t.Fatal(err)
	}
	job, err := o.Call(interruptWhen(runs), p, nil) // Ctrl-C once the command runs
	if err != nil {
		t.Fatal(err)
	}
	if r := job.Minions["web1"]; job.State == status.Finished || r.State != status.Running {
		t.Fatalf("job %s, entry %+v: want RUNNING", job.State, r)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	driveHere(t, o, job.JobID)
	_, entries, err := o.Store.Job(job.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if e := entries["web1"]; !e.OK || !strings.Contains(string(e.Result), "finished") {
		t.Fatalf("entry %+v %s", e, e.Result)
	}
	if got, _ := os.ReadFile(runs); string(got) != "run\n" {
		t.Errorf("the command ran %q times, want once", got)
	}
}

// Without an identity the call fails before any job is recorded.
func TestCallNoIdentity(t *testing.T) {
	o := newOverlord(t)
	startMinion(t, o, "web1")
	p, err := o.Prepare(overlord.CallSpec{Target: "*", Module: "test", Method: "ping"})
	if err != nil {
		t.Fatal(err)
	}
	broken := overlord.New(o.Dir, filepath.Join(t.TempDir(), "missing.pem"), 0, nil)
	if _, err := broken.Call(context.Background(), p, nil); err == nil {
		t.Fatal("Call without an identity succeeded")
	}
	if recs, _ := o.Store.ListJobs(jobs.ListOptions{}); len(recs) != 0 {
		t.Errorf("%d jobs recorded", len(recs))
	}
}

// A minion whose address now answers with another minion's certificate
// (an address reused, a DNS mix-up) is refused as tls, whatever the
// address.
func TestCallChecksMinionName(t *testing.T) {
	o := newOverlord(t)
	startMinion(t, o, "web1")
	ms, _ := o.Store.Minions()
	// Register web2 at web1's address.
	if _, err := o.AddMinion("web2", ms[0].Addr, filepath.Join(t.TempDir(), "web2.pem"), certs.ECDSA); err != nil {
		t.Fatal(err)
	}
	p, err := o.Prepare(overlord.CallSpec{Target: "*", Module: "test", Method: "ping"})
	if err != nil {
		t.Fatal(err)
	}
	job, err := o.Call(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !job.Minions["web1"].OK {
		t.Errorf("web1: %+v", job.Minions["web1"])
	}
	if r := job.Minions["web2"]; r.OK || r.Error == nil || r.Error.Kind != status.KindTLS {
		t.Errorf("web2 answered by web1's certificate: %+v", r)
	}
}

// The job's JSON is the documented document (spot check of the shape
// scripts read).
func TestCallJobJSON(t *testing.T) {
	o := newOverlord(t)
	startMinion(t, o, "web1")
	p, err := o.Prepare(overlord.CallSpec{Target: "web1", Module: "command", Method: "run", Words: []string{"echo hi"}})
	if err != nil {
		t.Fatal(err)
	}
	job, err := o.Call(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(job)
	var doc struct {
		JobID   string `json:"job_id"`
		State   string `json:"state"`
		Minions map[string]struct {
			OK     bool `json:"ok"`
			Result struct {
				Stdout   string `json:"stdout"`
				ExitCode int    `json:"exit_code"`
			} `json:"result"`
		} `json:"minions"`
		Summary status.Summary `json:"summary"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	w := doc.Minions["web1"]
	if doc.State != "FINISHED" || !w.OK || w.Result.Stdout != "hi\n" || w.Result.ExitCode != 0 || doc.Summary.Total != 1 {
		t.Errorf("job JSON %s", raw)
	}
}
