package overlord_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

// openService runs the service on o's state directory until the test
// ends.
func openService(t *testing.T, o *overlord.Overlord) *overlord.Service {
	t.Helper()
	svc, err := o.OpenService(context.Background(), overlord.ServiceConfig{ScanInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := svc.Close(ctx); err != nil {
			t.Errorf("closing the service: %v", err)
		}
	})
	return svc
}

// client returns another overlord process's view of o's state directory,
// going through the service if one answers.
func viaService(t *testing.T, o *overlord.Overlord) *overlord.Overlord {
	t.Helper()
	c := overlord.New(o.Dir, "", o.Store.LockTimeout(), nil)
	c.DriverCommand = []string{"true"} // a detached driver would do nothing
	how, ok := c.UseService(context.Background())
	if !ok {
		t.Fatalf("not through the service: %s", how)
	}
	return c
}

// comparable is a job's JSON without what differs between two runs of
// the same call (IDs, times, durations).
func comparable(j status.Job) string {
	j.JobID, j.CreatedAt, j.FinishedAt = "", time.Time{}, nil
	b, _ := json.Marshal(j)
	return durations.ReplaceAllString(string(b), "")
}

// durations matches a duration field, absent when 0 (omitempty).
var durations = regexp.MustCompile(`,?"duration_ms":[0-9]+`)

// A call through the service gives what the same call made directly
// gives: results, error kinds (a minion nobody listens for is
// unreachable either way), and the job recorded.
func TestServiceCallSameAsDirect(t *testing.T) {
	o := newOverlord(t)
	startMinion(t, o, "web1")
	startMinion(t, o, "web2")
	addDeadMinion(t, o, "dead1")
	svc := openService(t, o)
	if fi, err := os.Stat(svc.Socket()); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket %s: %v %v, want a socket of mode 0600", svc.Socket(), fi.Mode(), err)
	}
	c := viaService(t, o)
	run := func(o *overlord.Overlord, cmd string) status.Job {
		p, err := o.Prepare(overlord.CallSpec{Target: "*", Module: "command", Method: "run", Words: []string{cmd}, ConnectTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		job, err := o.Call(context.Background(), p, nil)
		if err != nil {
			t.Fatal(err)
		}
		rec, entries, err := o.Store.Job(job.JobID)
		if err != nil || rec.State != status.Finished || len(entries) != 3 {
			t.Fatalf("recorded %+v %v: %v", rec, entries, err)
		}
		return job
	}
	for _, cmd := range []string{"echo hello", "echo oops >&2; exit 3"} {
		direct, through := run(o, cmd), run(c, cmd)
		a, b := comparable(direct), comparable(through)
		if a != b {
			t.Errorf("%q\ndirect:  %s\nservice: %s", cmd, a, b)
		}
		if k := through.Minions["dead1"].Error; k == nil || k.Kind != status.KindUnreachable {
			t.Errorf("%q: dead1 through the service: %+v, want unreachable", cmd, through.Minions["dead1"])
		}
	}
}

// With the service up, an async job is driven in the service: no driver
// process (the one a detached start would run does nothing here). The
// in-process minions start no runner, so each job ends failed: what counts
// is that the service submitted it to every minion and saw it end.
func TestServiceDrivesAsyncJobs(t *testing.T) {
	o := newOverlord(t)
	startMinion(t, o, "web1")
	startMinion(t, o, "web2")
	openService(t, o)
	c := viaService(t, o)
	var ids []string
	for range 20 {
		p, err := c.Prepare(overlord.CallSpec{Target: "*", Module: "command", Method: "run", Words: []string{"echo done"}})
		if err != nil {
			t.Fatal(err)
		}
		rec, err := c.Submit(p, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.ID)
	}
	for _, id := range ids {
		waitFinished(t, o, id)
		submitted(t, o, id, 2)
	}
}

// Jobs left open while no service ran (their drivers gone) are carried on
// when it starts.
func TestServiceAdoptsOpenJobs(t *testing.T) {
	o := newOverlord(t)
	startMinion(t, o, "web1")
	p, err := o.Prepare(overlord.CallSpec{Target: "*", Module: "test", Method: "ping"})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := o.Submit(p, time.Minute) // its driver does nothing
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); o.Jobs.Alive(rec.ID); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the do-nothing driver still holds the job")
		}
	}
	if hdr, err := o.Store.Header(rec.ID); err != nil || hdr.State == status.Finished {
		t.Fatalf("before the service: %+v %v", hdr, err)
	}
	openService(t, o)
	waitFinished(t, o, rec.ID)
	submitted(t, o, rec.ID, 1)
}

// A second service on the same state directory refuses to start and
// leaves the first one's socket alone.
func TestServiceOnlyOne(t *testing.T) {
	o := newOverlord(t)
	openService(t, o)
	other := overlord.New(o.Dir, "", o.Store.LockTimeout(), nil)
	if _, err := other.OpenService(context.Background(), overlord.ServiceConfig{}); err == nil || !strings.Contains(err.Error(), "another overlord serve") {
		t.Fatalf("second service: %v", err)
	}
	viaService(t, o)
}

// A stale socket (a service killed) is not mistaken for a service, and a
// new service replaces it.
func TestServiceStaleSocket(t *testing.T) {
	o := newOverlord(t)
	ln, err := net.Listen("unix", overlord.SocketPath(o.Dir))
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	c := overlord.New(o.Dir, "", o.Store.LockTimeout(), nil)
	if how, ok := c.UseService(context.Background()); ok || !strings.HasPrefix(how, "direct:") {
		t.Fatalf("stale socket: %q %v", how, ok)
	}
	openService(t, o)
	viaService(t, o)
}

// The socket refuses a user other than the state directory's owner with
// HTTP 403, whatever the socket's mode: the check is on the peer's
// credentials (here the owner is made another uid than this process's;
// e2e runs the real binary as another user).
func TestServiceRefusesOtherUsers(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })}
	go srv.Serve(overlord.OwnerOnly(ln, os.Getuid()+1))
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := hc.Get("http://overlord/local/ping")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "owner of its state directory") {
		t.Fatalf("another uid: HTTP %d %q, want 403", resp.StatusCode, body)
	}
	// The owner gets through.
	srv2 := &http.Server{Handler: srv.Handler}
	sock2 := filepath.Join(t.TempDir(), "s2.sock")
	ln2, err := net.Listen("unix", sock2)
	if err != nil {
		t.Fatal(err)
	}
	go srv2.Serve(overlord.OwnerOnly(ln2, os.Getuid()))
	defer srv2.Close()
	hc2 := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock2)
	}}}
	resp, err = hc2.Get("http://overlord/local/ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot {
		t.Fatalf("the owner: HTTP %d", resp.StatusCode)
	}
}

// waitFinished waits for job id to be FINISHED.
func waitFinished(t *testing.T, o *overlord.Overlord, id string) jobs.Record {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		hdr, err := o.Store.Header(id)
		if err == nil && hdr.State == status.Finished {
			return hdr
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not FINISHED after a minute: %+v %v", id, hdr, err)
		}
	}
}

// submitted checks that each of job id's n entries was submitted to its
// minion (it has the minion's job ID).
func submitted(t *testing.T, o *overlord.Overlord, id string, n int) {
	t.Helper()
	_, entries, err := o.Store.Job(id)
	if err != nil || len(entries) != n {
		t.Fatalf("job %s: %d entries, %v", id, len(entries), err)
	}
	for name, e := range entries {
		if e.MinionJobID == "" {
			t.Errorf("job %s: %s never submitted: %+v", id, name, e)
		}
	}
}

// The service reconciles on its own: an entry that ended unreachable while
// its minion was out of reach gets the minion's result once the minion is
// back and the job has ended there.
func TestServiceReconciles(t *testing.T) {
	o := newOverlord(t)
	overlord.SetDriverTimings(o, 10*time.Millisecond, 50*time.Millisecond, 100*time.Millisecond)
	web1 := addFlakyMinion(t, o, "web1")
	web1.start()
	rec, done, gate := startGated(t, o, web1)
	waitEntry(t, o, rec.ID, "web1", "submitted", func(e status.Result) bool { return e.MinionJobID != "" })
	web1.stop()
	driven(t, done)
	web1.start()
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	svc, err := o.OpenService(context.Background(), overlord.ServiceConfig{ReconcileInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close(context.Background())
	e := waitEntry(t, o, rec.ID, "web1", "reconciled", func(e status.Result) bool { return e.Reconciled })
	if !e.OK || e.ErrorBeforeReconcile == nil || e.ErrorBeforeReconcile.Kind != status.KindUnreachable {
		t.Errorf("reconciled entry: %+v", e)
	}
	if hdr, err := o.Store.Header(rec.ID); err != nil || hdr.Summary.OK != 1 {
		t.Errorf("summary after reconciling: %+v %v", hdr.Summary, err)
	}
}

// Ctrl-C of a call going through the service: the minion already running
// it keeps it, the one the call never reached is recorded as unsent, and
// the service drives the job on: the first adopted (run once), the second
// submitted.
func TestServiceCallInterrupted(t *testing.T) {
	o := newOverlord(t)
	startMinion(t, o, "web1")
	startMinion(t, o, "web2")
	openService(t, o)
	c := viaService(t, o)
	dir := t.TempDir()
	runs, gate := filepath.Join(dir, "runs"), filepath.Join(dir, "gate")
	cmd := fmt.Sprintf("echo run >> %s; while [ ! -e %s ]; do sleep 0.05; done; echo finished", runs, gate)
	p, err := c.Prepare(overlord.CallSpec{Target: "web*", Module: "command", Method: "run", Words: []string{cmd}, Forks: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Ctrl-C once web1 runs the command; web2 waits for a fork.
	job, err := c.Call(interruptWhen(runs), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if job.State == status.Finished || job.Minions["web1"].State != status.Running || job.Minions["web2"].State != status.Running {
		t.Fatalf("job %s, entries %+v: want RUNNING", job.State, job.Minions)
	}
	rec, err := o.Store.Header(job.JobID)
	if err != nil || !slices.Equal(rec.Unsent, []string{"web2"}) {
		t.Fatalf("unsent %q (%v), want [web2]", rec.Unsent, err)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFinished(t, o, job.JobID)
	_, entries, err := o.Store.Job(job.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if e := entries["web1"]; !e.OK || !strings.Contains(string(e.Result), "finished") {
		t.Errorf("web1: %+v %s", e, e.Result)
	}
	if e := entries["web2"]; e.MinionJobID == "" {
		t.Errorf("web2 never submitted: %+v", e)
	}
	if got, _ := os.ReadFile(runs); string(got) != "run\n" && string(got) != "run\nrun\n" {
		t.Errorf("runs %q", got)
	}
}

// A state directory whose socket path would be too long for a unix socket
// is refused with a message that says what to do, and commands work
// directly.
func TestServiceSocketPathTooLong(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	o := overlord.New(dir, "", 0, nil)
	if _, err := o.InitCA("op", certs.ECDSA); err != nil {
		t.Fatal(err)
	}
	if _, err := o.OpenService(context.Background(), overlord.ServiceConfig{}); err == nil || !strings.Contains(err.Error(), "shorter path") {
		t.Fatalf("OpenService: %v, want the path too long", err)
	}
	if how, ok := o.UseService(context.Background()); ok || !strings.Contains(how, "shorter path") {
		t.Fatalf("UseService: %q %v", how, ok)
	}
}

// fakeService serves the local protocol's ping on o's socket, with the
// given protocol version, and HTTP 404 for everything else: an older or
// newer service.
func fakeService(t *testing.T, o *overlord.Overlord, protocol int) {
	t.Helper()
	ln, err := net.Listen("unix", overlord.SocketPath(o.Dir))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /local/ping", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"pid": 1, "version": "v0", "protocol": %d}`, protocol)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// A service that speaks another version of the local protocol (an
// upgrade with the old service still running) is not used: commands work
// directly, and -v says why.
func TestServiceOtherProtocol(t *testing.T) {
	o := newOverlord(t)
	fakeService(t, o, 0)
	c := overlord.New(o.Dir, "", 0, nil)
	if how, ok := c.UseService(context.Background()); ok || !strings.Contains(how, "speaks protocol 0") || !strings.Contains(how, "restart it") {
		t.Fatalf("UseService: %q %v", how, ok)
	}
}

// A service that turns a call down (it answers the ping, not the call)
// costs the call nothing: it is made directly.
func TestServiceCallTurnedDown(t *testing.T) {
	o := newOverlord(t)
	startMinion(t, o, "web1")
	fakeService(t, o, 1)
	c := viaService(t, o)
	p, err := c.Prepare(overlord.CallSpec{Target: "*", Module: "test", Method: "ping"})
	if err != nil {
		t.Fatal(err)
	}
	job, err := c.Call(context.Background(), p, nil)
	if err != nil || job.State != status.Finished || job.Summary.OK != 1 {
		t.Fatalf("call: %+v %v", job, err)
	}
}

// Through the service, --connect-timeout bounds the connect and the TLS
// handshake together, as it does directly: a minion that accepts but never
// finishes its handshake is unreachable within the call's wait.
func TestServiceConnectTimeout(t *testing.T) {
	o := newOverlord(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent until the test ends
		}
	}()
	if _, err := o.AddMinion("mute", ln.Addr().String(), filepath.Join(t.TempDir(), "mute.pem"), certs.ECDSA); err != nil {
		t.Fatal(err)
	}
	openService(t, o)
	c := viaService(t, o)
	p, err := c.Prepare(overlord.CallSpec{Target: "mute", Module: "test", Method: "ping", ConnectTimeout: 200 * time.Millisecond, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	job, err := c.Call(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := job.Minions["mute"]; job.State != status.Finished || r.Error == nil || r.Error.Kind != status.KindUnreachable {
		t.Fatalf("job %s, entry %+v %+v: want FINISHED unreachable", job.State, r, r.Error)
	}
}
