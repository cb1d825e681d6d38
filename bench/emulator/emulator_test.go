package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/modules/command"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// startFleet makes a CA in a temporary state directory and serves n
// emulated minions, registered there, on two loopback listeners.
func startFleet(t *testing.T, n int) (*overlord.Overlord, *Fleet) {
	t.Helper()
	dir := t.TempDir()
	o := overlord.New(dir, "", 0, nil)
	if _, err := o.InitCA("overlord-test", certs.ECDSA); err != nil {
		t.Fatal(err)
	}
	var ls []net.Listener
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("em%03d", i)
	}
	f, err := NewFleet(Config{StateDir: dir, Names: names, Listeners: ls, Register: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return o, f
}

// A synchronous call from a real overlord reaches every emulated minion,
// each pinned by the fingerprint the emulator registered, and is recorded
// as any call is.
func TestEmulatorAnswersACall(t *testing.T) {
	o, f := startFleet(t, 20)
	reg, err := o.Store.Minions()
	if err != nil {
		t.Fatal(err)
	}
	if len(reg) != 20 {
		t.Fatalf("registry holds %d minions, want 20", len(reg))
	}
	addrs := map[string]bool{}
	for _, m := range reg {
		addrs[m.Addr] = true
	}
	if len(addrs) != 2 {
		t.Errorf("minions registered at %d addresses, want the 2 listeners'", len(addrs))
	}
	p, err := o.Prepare(overlord.CallSpec{Target: "*", Module: "test", Method: "echo", Words: []string{`{"hi":1}`}})
	if err != nil {
		t.Fatal(err)
	}
	job, err := o.Call(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if job.State != status.Finished || job.Summary.OK != 20 {
		t.Fatalf("job %s, summary %+v; want FINISHED with 20 ok", job.State, job.Summary)
	}
	for name, r := range job.Minions {
		if string(r.Result) != `{"hi":1}` {
			t.Errorf("%s: result %s, want the message echoed", name, r.Result)
		}
	}
	rec, entries, err := o.Store.Job(job.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != status.Finished || len(entries) != 20 {
		t.Errorf("the job record is %s with %d entries, want FINISHED with 20", rec.State, len(entries))
	}

	c, err := o.Client(f.Minions(), 4, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	var reply rpc.CallReply
	if err := c.Call(ctx, "em007", "Minion.Call", rpc.CallParams{Module: "command", Method: "run", Args: map[string]any{"cmd": "hostname"}}, &reply); err != nil {
		t.Fatal(err)
	}
	var res command.Result
	if err := json.Unmarshal(reply.Result, &res); err != nil || res.Stdout != "em007\n" || res.ExitCode != 0 {
		t.Errorf("command.run stand-in: %s (%v), want the minion's name and exit 0", reply.Result, err)
	}
	var desc rpc.DescribeReply
	if err := c.Call(ctx, "em003", "Minion.Describe", rpc.DescribeParams{}, &desc); err != nil {
		t.Fatal(err)
	}
	if desc.Name != "em003" || len(desc.Modules) != 2 {
		t.Errorf("Describe: %s with %d modules, want em003 with test and command", desc.Name, len(desc.Modules))
	}
	err = c.Call(ctx, "em003", "Minion.Call", rpc.CallParams{Module: "file", Method: "read"}, &reply)
	if status.KindOf(err) != status.KindUnknownModule {
		t.Errorf("a module the emulator lacks: %v, want kind unknown_module", err)
	}
}

// A minion presenting another minion's certificate is refused by the
// overlord's pin, and a name the emulator does not serve fails its
// handshake.
func TestEmulatorPinsAndNames(t *testing.T) {
	o, f := startFleet(t, 3)
	ms := f.Minions()
	wrong := []jobs.Minion{ms[0], {Name: "stranger", Addr: ms[0].Addr}}
	wrong[0].Fingerprint = ms[1].Fingerprint
	c, err := o.Client(wrong, 2, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var reply rpc.CallReply
	for _, name := range []string{ms[0].Name, "stranger"} {
		err := c.Call(context.Background(), name, "Minion.Call", rpc.CallParams{Module: "test", Method: "ping"}, &reply)
		if status.KindOf(err) != status.KindTLS {
			t.Errorf("%s: %v, want kind tls", name, err)
		}
	}
}

// An async job runs in memory: submit, long poll, result; a submit again
// finds the same job.
func TestEmulatorAsync(t *testing.T) {
	o, f := startFleet(t, 2)
	c, err := o.Client(f.Minions(), 2, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	sp := rpc.SubmitParams{OriginJobID: "01a244c6-0000-7000-8000-000000000001", Module: "test", Method: "sleep", Args: map[string]any{"seconds": 0.05}}
	var sub, again rpc.SubmitReply
	if err := c.Call(ctx, "em001", "Minion.Submit", sp, &sub); err != nil {
		t.Fatal(err)
	}
	if err := c.Call(ctx, "em001", "Minion.Submit", sp, &again); err != nil {
		t.Fatal(err)
	}
	if !sub.Created || again.Created || again.JobID != sub.JobID {
		t.Errorf("submits %+v then %+v: want one job, created once", sub, again)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var st rpc.StatusReply
		if err := c.Call(ctx, "em001", "Minion.Status", rpc.StatusParams{JobIDs: []string{sub.JobID}, WaitMS: 2000}, &st); err != nil {
			t.Fatal(err)
		}
		if j := st.Jobs[0]; j.State == status.Finished {
			if !j.OK || !bytes.Equal(j.Result, []byte("true")) {
				t.Errorf("job finished %+v, want ok true", j)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the job did not finish")
		}
	}
	var other rpc.StatusReply
	if err := c.Call(ctx, "em000", "Minion.Status", rpc.StatusParams{JobIDs: []string{sub.JobID}}, &other); err != nil {
		t.Fatal(err)
	}
	if j := other.Jobs[0]; j.Error == nil || j.Error.Kind != status.KindLost || !strings.Contains(j.Error.Message, sub.JobID) {
		t.Errorf("another minion's job: %+v, want lost", j)
	}
}
