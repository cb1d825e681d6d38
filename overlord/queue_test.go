package overlord_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/minion"
	"github.com/overlordhq/overlord/minion/miniontest"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

// flakyMinion is a minion registered at a loopback address where it is
// served only while a test wants it: start and stop it at will. Its
// state directory stays, and so do the async jobs its runners (this test
// binary, see TestMain) carry on while it is stopped.
type flakyMinion struct {
	t              *testing.T
	addr, stateDir string
	bundle         *certs.Bundle
	srv            *minion.Server
}

func addFlakyMinion(t *testing.T, o *overlord.Overlord, name string) *flakyMinion {
	t.Helper()
	ln, err := miniontest.Listen()
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	path := filepath.Join(t.TempDir(), name+".pem")
	if _, err := o.AddMinion(name, addr, path, certs.ECDSA); err != nil {
		t.Fatal(err)
	}
	b, err := certs.ReadBundle(path)
	if err != nil {
		t.Fatal(err)
	}
	return &flakyMinion{t: t, addr: addr, stateDir: t.TempDir(), bundle: b}
}

// start serves the minion at its address.
func (m *flakyMinion) start() {
	m.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		m.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", m.addr)
	if err != nil {
		m.t.Fatal(err)
	}
	m.srv = miniontest.Serve(m.t, minion.Config{StateDir: m.stateDir, Bundle: m.bundle, Listener: ln, RunnerCommand: []string{exe, runnerArg}})
}

// stop stops serving it; its runners go on.
func (m *flakyMinion) stop() {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.srv.Close(ctx); err != nil {
		m.t.Fatal(err)
	}
}

// driveAsync drives job id in this process, in the background, once the
// driver Submit started (DriverCommand, which does nothing) has let the
// job go; the channel gets Drive's error. The test's end stops it.
func driveAsync(t *testing.T, o *overlord.Overlord, id string) <-chan error {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); o.Jobs.Alive(id); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the job's driver lock is still held")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	done := make(chan error, 1)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		done <- o.Drive(ctx, id, nil)
	}()
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
	return done
}

// driven waits for the driver of driveAsync to return, and fails the test
// if it failed.
func driven(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Drive: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the driver did not return within 2 minutes")
	}
}

// waitEntry waits up to a minute until minion name's entry in job id
// satisfies cond, and returns it.
func waitEntry(t *testing.T, o *overlord.Overlord, id, name, what string, cond func(status.Result) bool) status.Result {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		_, entries, err := o.Store.Job(id)
		if err != nil {
			t.Fatal(err)
		}
		if e := entries[name]; cond(e) {
			return e
		} else if time.Now().After(deadline) {
			t.Fatalf("%s's entry is not %s after a minute: %+v", name, what, e)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// submitAsync submits an async command.run of cmd to web1, with opts.
func submitAsync(t *testing.T, o *overlord.Overlord, cmd string, timeout time.Duration, opts ...overlord.SubmitOption) jobs.Record {
	t.Helper()
	p, err := o.Prepare(overlord.CallSpec{Target: "web1", Module: "command", Method: "run", Words: []string{cmd}})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := o.Submit(p, timeout, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// With --queue, a minion down when the job is submitted keeps its entry
// open, queued, past the submit retries, and gets the job when it comes
// back; without it, the entry ends unreachable after the retries.
func TestQueueDeliversWhenTheMinionComesBack(t *testing.T) {
	for _, queue := range []bool{true, false} {
		t.Run(fmt.Sprintf("queue=%v", queue), func(t *testing.T) {
			o := newOverlord(t)
			overlord.SetDriverTimings(o, 10*time.Millisecond, 50*time.Millisecond, 100*time.Millisecond)
			web1 := addFlakyMinion(t, o, "web1")
			var opts []overlord.SubmitOption
			if queue {
				opts = append(opts, overlord.Queue())
			}
			before := time.Now()
			rec := submitAsync(t, o, "echo done", time.Minute, opts...)
			if rec.Queue != queue {
				t.Fatalf("the job records queue %v, want %v", rec.Queue, queue)
			}
			done := driveAsync(t, o, rec.ID)
			if !queue {
				driven(t, done)
				_, entries, err := o.Store.Job(rec.ID)
				if err != nil {
					t.Fatal(err)
				}
				if e := entries["web1"]; e.State != status.Finished || e.Error == nil || e.Error.Kind != status.KindUnreachable || e.QueuedSince != nil {
					t.Fatalf("without --queue: entry %+v, want FINISHED unreachable", e)
				}
				return
			}
			e := waitEntry(t, o, rec.ID, "web1", "queued", status.Result.Queued)
			if e.State != status.Running || e.LastError == nil || e.LastError.Kind != status.KindUnreachable ||
				e.QueuedSince.Before(before.Add(-time.Second)) || e.QueuedSince.After(time.Now()) {
				t.Fatalf("queued entry %+v (last error %+v), want RUNNING since the first failure, last error unreachable", e, e.LastError)
			}
			web1.start()
			driven(t, done)
			got, entries, err := o.Store.Job(rec.ID)
			if err != nil {
				t.Fatal(err)
			}
			e = entries["web1"]
			if got.State != status.Finished || !e.OK || !strings.Contains(string(e.Result), `"stdout":"done\n"`) || e.QueuedSince != nil || e.LastError != nil {
				t.Fatalf("job %s, entry %+v %s: want FINISHED ok, no longer queued", got.State, e, e.Result)
			}
		})
	}
}

// A queued minion that never comes back ends unreachable at the job's
// deadline, saying since when it was queued.
func TestQueueEndsAtTheDeadline(t *testing.T) {
	o := newOverlord(t)
	overlord.SetDriverTimings(o, 10*time.Millisecond, 50*time.Millisecond, 100*time.Millisecond)
	addFlakyMinion(t, o, "web1")
	rec := submitAsync(t, o, "echo done", 2*time.Second, overlord.Queue())
	driven(t, driveAsync(t, o, rec.ID))
	got, entries, err := o.Store.Job(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	e := entries["web1"]
	if got.State != status.Finished || e.State != status.Finished || e.Error == nil || e.Error.Kind != status.KindUnreachable ||
		!strings.Contains(e.Error.Message, "queued since ") || !strings.Contains(e.Error.Message, "never came back") {
		t.Fatalf("job %s, entry %+v (%+v): want FINISHED unreachable, queued since ... never came back", got.State, e, e.Error)
	}
	if got.Summary != (status.Summary{Total: 1, Failed: 1}) {
		t.Errorf("summary %+v", got.Summary)
	}
}

// startGated submits a command to web1 that waits for a gate file, drives
// it, and waits until the command runs; it returns the job, the driver's
// channel and the gate, opened when the test ends at the latest so that
// the runner ends.
func startGated(t *testing.T, o *overlord.Overlord, web1 *flakyMinion, opts ...overlord.SubmitOption) (jobs.Record, <-chan error, string) {
	t.Helper()
	dir := t.TempDir()
	started, gate := filepath.Join(dir, "started"), filepath.Join(dir, "gate")
	t.Cleanup(func() { os.WriteFile(gate, nil, 0o600) })
	rec := submitAsync(t, o, fmt.Sprintf("echo started; touch %s; while [ ! -e %s ]; do sleep 0.05; done; echo finished", started, gate), time.Minute, opts...)
	done := driveAsync(t, o, rec.ID)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(started); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatal("the command did not start within a minute")
		}
	}
	return rec, done, gate
}

// With --queue, a minion out of reach while its job runs does not end
// its entry after unreachableAfter: the driver waits for it, and gets the
// result when it comes back.
func TestQueueWaitsForAMinionOutOfReach(t *testing.T) {
	const unreachable = 100 * time.Millisecond
	o := newOverlord(t)
	overlord.SetDriverTimings(o, 10*time.Millisecond, 50*time.Millisecond, unreachable)
	web1 := addFlakyMinion(t, o, "web1")
	web1.start()
	rec, done, gate := startGated(t, o, web1, overlord.Queue())
	waitEntry(t, o, rec.ID, "web1", "submitted", func(e status.Result) bool { return e.MinionJobID != "" })
	web1.stop()
	// The point is the passage of time: many times unreachableAfter.
	time.Sleep(20 * unreachable)
	select {
	case err := <-done:
		t.Fatalf("the driver returned (%v) while the minion was out of reach", err)
	default:
	}
	if e := waitEntry(t, o, rec.ID, "web1", "read", func(status.Result) bool { return true }); e.State == status.Finished {
		t.Fatalf("entry %+v (%+v): ended while its minion was out of reach, want it open", e, e.Error)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	web1.start()
	driven(t, done)
	_, entries, err := o.Store.Job(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if e := entries["web1"]; !e.OK || !strings.Contains(string(e.Result), `"stdout":"started\nfinished\n"`) {
		t.Fatalf("entry %+v %s, want ok", e, e.Result)
	}
}

// An entry the driver ended unreachable while its minion job ran gets the
// minion's own result by a reconcile once the minion answers and its job
// is FINISHED; not before, and only once. ReconcileDue does it for jobs
// finished within its window.
func TestReconcile(t *testing.T) {
	o := newOverlord(t)
	overlord.SetDriverTimings(o, 10*time.Millisecond, 50*time.Millisecond, 100*time.Millisecond)
	web1 := addFlakyMinion(t, o, "web1")
	web1.start()
	rec, done, gate := startGated(t, o, web1)
	ctx := context.Background()
	if _, _, err := o.Reconcile(ctx, rec.ID); !errors.Is(err, overlord.ErrNotFinished) || !strings.Contains(err.Error(), "overlord job status "+rec.ID+" --wait") {
		t.Errorf("Reconcile of a running job: %v, want ErrNotFinished saying to wait", err)
	}
	before := waitEntry(t, o, rec.ID, "web1", "submitted", func(e status.Result) bool { return e.MinionJobID != "" })
	web1.stop()
	driven(t, done)
	_, entries, err := o.Store.Job(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	lost := entries["web1"]
	if lost.State != status.Finished || lost.Error == nil || lost.Error.Kind != status.KindUnreachable || lost.MinionJobID != before.MinionJobID {
		t.Fatalf("entry %+v (%+v), want FINISHED unreachable with its minion job", lost, lost.Error)
	}

	// Out of reach, then running still: nothing changes.
	reconcile := func(want int) status.Result {
		t.Helper()
		got, n, err := o.Reconcile(ctx, rec.ID[:13]) // a prefix
		if err != nil || n != want {
			t.Fatalf("Reconcile: %d entries, %v; want %d", n, err, want)
		}
		_, entries, err := o.Store.Job(rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if e := entries["web1"]; e.OK != (got.Summary.OK == 1) {
			t.Fatalf("summary %+v does not follow the entry %+v", got.Summary, e)
		}
		return entries["web1"]
	}
	if e := reconcile(0); e.Reconciled || e.Error.Kind != status.KindUnreachable {
		t.Fatalf("minion down: entry %+v", e)
	}
	web1.start()
	if e := reconcile(0); e.Reconciled || e.Error.Kind != status.KindUnreachable {
		t.Fatalf("minion job still running: entry %+v", e)
	}

	// The job ends on the minion: outside the window, ReconcileDue
	// leaves it; inside, it reconciles it.
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFileIn(t, filepath.Join(web1.stateDir, "spool", lost.MinionJobID, "result.json"))
	if n, err := o.ReconcileDue(ctx, time.Hour, time.Now().Add(2*time.Hour)); n != 0 || err != nil {
		t.Fatalf("ReconcileDue past its window: %d entries, %v; want none", n, err)
	}
	if n, err := o.ReconcileDue(ctx, 0, time.Now()); n != 1 || err != nil {
		t.Fatalf("ReconcileDue: %d entries, %v; want 1", n, err)
	}
	got, entries, err := o.Store.Job(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	e := entries["web1"]
	if !e.OK || !e.Reconciled || e.ErrorBeforeReconcile == nil || *e.ErrorBeforeReconcile != *lost.Error ||
		e.MinionJobID != lost.MinionJobID || !strings.Contains(string(e.Result), `"stdout":"started\nfinished\n"`) {
		t.Fatalf("reconciled entry %+v %s (before: %+v)", e, e.Result, e.ErrorBeforeReconcile)
	}
	if got.Summary != (status.Summary{Total: 1, OK: 1}) || got.State != status.Finished {
		t.Errorf("job %s, summary %+v; want FINISHED, 1 ok", got.State, got.Summary)
	}
	if e := reconcile(0); !e.Reconciled {
		t.Errorf("a second reconcile changed the entry: %+v", e)
	}
}

// A job whose driver lock is held is not reconciled: Reconcile says it is
// still being driven, ReconcileDue skips it without an error.
func TestReconcileSkipsADrivenJob(t *testing.T) {
	o := newOverlord(t)
	addDeadMinion(t, o, "web1")
	rec := &jobs.Record{Target: "web1", Module: "test", Method: "ping", Async: true, Caller: "op"}
	if err := o.Store.CreateJob(rec, []string{"web1"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	late := status.Result{State: status.Finished, MinionJobID: "0193-minion-job", Error: status.Errorf(status.KindUnreachable, "out of reach")}
	if _, err := o.Store.Write(rec.ID, map[string]status.Result{"web1": late}, func(r *jobs.Record) error {
		r.State, r.FinishedAt = status.Finished, &now
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	lock, ok, err := o.Jobs.Lock(rec.ID)
	if err != nil || !ok {
		t.Fatalf("lock: %v %v", ok, err)
	}
	defer lock.Close()
	if _, _, err := o.Reconcile(context.Background(), rec.ID); !errors.Is(err, overlord.ErrBeingDriven) {
		t.Errorf("Reconcile with the driver lock held: %v, want ErrBeingDriven", err)
	}
	if n, err := o.ReconcileDue(context.Background(), 0, time.Now()); n != 0 || err != nil {
		t.Errorf("ReconcileDue with the driver lock held: %d, %v; want 0, no error", n, err)
	}
	lock.Close()
	// Let go, the minion is asked (and is out of reach): nothing changes.
	if _, n, err := o.Reconcile(context.Background(), rec.ID); n != 0 || err != nil {
		t.Errorf("Reconcile, minion out of reach: %d, %v; want 0, no error", n, err)
	}
}

// waitFileIn waits up to a minute until file exists.
func waitFileIn(t *testing.T, file string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(file); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("%s: not there after a minute", file)
		}
	}
}
