//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// gatewayProc is a gateway of a fleet: its own state directory and
// 'overlord serve' there.
type gatewayProc struct {
	name, addr, dir string
	p               *proc
}

// addGateway registers a gateway with f's overlord, installs its bundle in
// a state directory of its own and starts its 'overlord serve'; it is
// stopped when the test ends.
func addGateway(t *testing.T, f *fleet, name string) *gatewayProc {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	g := &gatewayProc{name: name, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: filepath.Join(f.dir, "gw-"+name)}
	bundle := filepath.Join(f.dir, name+".pem")
	if out, err := f.overlord("gateway", "add", name, "--addr", g.addr, "--bundle-out", bundle); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := f.run("overlord", "--state-dir", g.dir, "gateway", "init", "--bundle", bundle); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	startGateway(t, f, g)
	return g
}

// startGateway starts (again) a gateway's 'overlord serve'.
func startGateway(t *testing.T, f *fleet, g *gatewayProc) {
	t.Helper()
	p, err := startProc(g.dir, filepath.Join(f.dir, "gw-"+g.name+".log"), f.env, f.path("overlord"),
		"--state-dir", g.dir, "serve", "--listen", g.addr, "--log-level", "debug", "--grace", "3s")
	if err != nil {
		t.Fatal(err)
	}
	g.p = p
	t.Cleanup(func() {
		if !p.exited() {
			if err := p.terminate(stopTimeout); err != nil {
				t.Errorf("gateway %s: %v\n%s", g.name, err, p.logTail(20))
			}
		}
	})
	if err := waitPort(g.addr, true, readyTimeout, p); err != nil {
		t.Fatalf("gateway %s: %v\n%s", g.name, err, p.logTail(20))
	}
}

// gatewayDoc is the part of a job document the gateway tests read.
type gatewayDoc struct {
	JobID   string `json:"job_id"`
	State   string `json:"state"`
	Minions map[string]struct {
		State string `json:"state"`
		OK    bool   `json:"ok"`
		Via   string `json:"via"`
		Error *struct {
			Kind    string `json:"kind"`
			Message string `json:"message"`
		} `json:"error"`
		Result json.RawMessage `json:"result"`
	} `json:"minions"`
}

func callDoc(t *testing.T, f *fleet, args ...string) (gatewayDoc, int, string) {
	t.Helper()
	cmd, stdout, stderr := overlordCmd(f, append(append([]string{"call"}, args...), "-o", "json")...)
	code := exitCode(t, cmd)
	var doc gatewayDoc
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatalf("call %q: exit %d, %v\n%s\n%s", args, code, err, stdout, stderr)
	}
	return doc, code, stdout.String()
}

// withoutVia is a call's JSON document without what varies between runs
// and without via.
func withoutVia(t *testing.T, doc string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatal(err)
	}
	drop(v)
	if m, ok := v.(map[string]any); ok {
		if ms, ok := m["minions"].(map[string]any); ok {
			for _, e := range ms {
				delete(e.(map[string]any), "via")
			}
		}
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// TestGateways: minions behind two gateways answer a call as minions
// reached directly do (the same JSON, with via), through the service too;
// when the preferred gateway is killed its minions fail over to the
// other; when both are down they end unreachable naming both; an async
// job survives its gateway's kill -9.
func TestGateways(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "a1", "a2", "b1", "c1", "d1")
	gw1 := addGateway(t, f, "gw1")
	gw2 := addGateway(t, f, "gw2")
	for name, via := range map[string]string{"a1": "gw1,gw2", "a2": "gw1,gw2", "b1": "gw2,gw1", "c1": "gw1"} {
		if out, err := f.overlord("minion", "set", name, "--via", via); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	wantVia := map[string]string{"a1": "gw1", "a2": "gw1", "b1": "gw2", "c1": "gw1", "d1": ""}

	t.Run("same as direct", func(t *testing.T) {
		doc, code, raw := callDoc(t, f, "*", "command.run", "echo hi from $(hostname) >/dev/null; echo out; echo err >&2; exit 3", "--direct")
		if code != 1 {
			t.Fatalf("exit %d, want 1 (every command exits 3):\n%s", code, raw)
		}
		for name, want := range wantVia {
			e := doc.Minions[name]
			var res struct {
				Stdout   string `json:"stdout"`
				ExitCode int    `json:"exit_code"`
			}
			_ = json.Unmarshal(e.Result, &res)
			if e.State != "FINISHED" || e.Via != want || e.Error == nil || e.Error.Kind != "module_error" || res.Stdout != "out\n" || res.ExitCode != 3 {
				t.Errorf("%s: %+v (result %s); want FINISHED failed with its output, via %q", name, e, e.Result, want)
			}
		}
		ping, code, raw := callDoc(t, f, "*", "test.ping", "--direct")
		if code != 0 || len(ping.Minions) != 5 {
			t.Fatalf("test.ping: exit %d:\n%s", code, raw)
		}
		for name, want := range wantVia {
			if e := ping.Minions[name]; !e.OK || e.Via != want {
				t.Errorf("test.ping %s: %+v, want ok via %q", name, e, want)
			}
		}
		// The same call with every minion reached directly.
		viaDoc := withoutVia(t, raw)
		for name := range wantVia {
			if out, err := f.overlord("minion", "set", name, "--via", ""); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}
		_, _, directRaw := callDoc(t, f, "*", "test.ping", "--direct")
		for name, via := range map[string]string{"a1": "gw1,gw2", "a2": "gw1,gw2", "b1": "gw2,gw1", "c1": "gw1"} {
			if out, err := f.overlord("minion", "set", name, "--via", via); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}
		if d := withoutVia(t, directRaw); d != viaDoc {
			t.Errorf("through gateways and direct differ:\nvia:    %s\ndirect: %s", viaDoc, d)
		}
		// Through the service, the same.
		serve, _ := startServeWith(t, f)
		waitService(t, f, serve)
		_, code, svcRaw := callDoc(t, f, "*", "test.ping")
		if code != 0 {
			t.Fatalf("through the service: exit %d:\n%s", code, svcRaw)
		}
		if d := withoutVia(t, svcRaw); d != viaDoc {
			t.Errorf("through the service and direct differ:\nservice: %s\ndirect:  %s", d, viaDoc)
		}
		svc, _, _ := callDoc(t, f, "*", "test.ping")
		for name, want := range wantVia {
			if e := svc.Minions[name]; !e.OK || e.Via != want {
				t.Errorf("through the service, %s: %+v, want ok via %q", name, e, want)
			}
		}
		if err := serve.terminate(stopTimeout); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("the caller's identity behind a gateway", func(t *testing.T) {
		bot := filepath.Join(f.dir, "ci-bot.pem")
		if out, err := f.overlord("ca", "client", "ci-bot", "--bundle-out", bot); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		a1 := mustMinion(t, f, "a1")
		if err := os.WriteFile(filepath.Join(a1.dir, "acl.conf"), []byte("ci-bot: test.*\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(filepath.Join(a1.dir, "acl.conf"))
		cmd, stdout, stderr := overlordCmd(f, "--identity", bot, "call", "a1", "command.run", "true", "--direct", "-o", "json")
		code := exitCode(t, cmd)
		var doc gatewayDoc
		if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
			t.Fatalf("exit %d, %v\n%s", code, err, stderr)
		}
		if e := doc.Minions["a1"]; code != 1 || e.Error == nil || e.Error.Kind != "denied" || e.Via != "gw1" {
			t.Errorf("ci-bot's command.run through gw1: exit %d, %s; want denied by a1's ACL", code, stdout)
		}
		cmd, stdout, _ = overlordCmd(f, "--identity", bot, "call", "a1", "test.ping", "--direct", "-o", "json")
		if code := exitCode(t, cmd); code != 0 {
			t.Errorf("ci-bot's test.ping through gw1: exit %d, %s", code, stdout)
		}
		out, err := f.run("minion", "--state-dir", a1.dir, "audit", "--limit", "0", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var sawDenied, sawPing bool
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var e struct {
				Identity, Via, Call, Outcome string
			}
			if json.Unmarshal([]byte(line), &e) != nil || e.Identity != "ci-bot" {
				continue
			}
			if e.Via != "gw1" {
				t.Errorf("audit line for ci-bot without via gw1: %s", line)
			}
			sawDenied = sawDenied || (e.Call == "command.run" && e.Outcome == "denied")
			sawPing = sawPing || (e.Call == "test.ping" && e.Outcome == "ok")
		}
		if !sawDenied || !sawPing {
			t.Errorf("a1's audit log: denied command.run %v, test.ping ok %v, for ci-bot via gw1; want both:\n%s", sawDenied, sawPing, out)
		}
		// A revoked identity gets nothing through a gateway (the CLI
		// refuses it first here; the minion's own refusal of a revoked
		// identity a gateway names is minion.TestGateway*).
		if out, err := f.overlord("ca", "revoke", "ci-bot"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		cmd, stdout, stderr = overlordCmd(f, "--identity", bot, "call", "a1", "test.ping", "--direct", "-o", "json")
		if code := exitCode(t, cmd); code == 0 {
			t.Errorf("a revoked identity's call through gw1: exit 0, %s %s", stdout, stderr)
		}
	})

	t.Run("cp fetch batch queue cancel", func(t *testing.T) {
		local := filepath.Join(f.dir, "payload.txt")
		if err := os.WriteFile(local, []byte("through the gateway\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		cpDest := filepath.Join(f.dir, "a1", "payload.txt")
		if out, err := f.overlord("cp", local, "a1:"+cpDest, "--direct"); err != nil {
			t.Fatalf("cp through gw1: %v\n%s", err, out)
		}
		if data, err := os.ReadFile(cpDest); err != nil || string(data) != "through the gateway\n" {
			t.Fatalf("cp: %q, %v", data, err)
		}
		fetched := filepath.Join(f.dir, "fetched")
		if out, err := f.overlord("fetch", "a1:"+cpDest, fetched, "--direct"); err != nil {
			t.Fatalf("fetch through gw1: %v\n%s", err, out)
		}
		if data, err := os.ReadFile(filepath.Join(fetched, "a1", "payload.txt")); err != nil || string(data) != "through the gateway\n" {
			t.Fatalf("fetch: %q, %v", data, err)
		}
		doc, code, raw := callDoc(t, f, "a*,b1", "test.ping", "--batch", "1", "--direct")
		if code != 0 || len(doc.Minions) != 3 {
			t.Fatalf("--batch 1: exit %d\n%s", code, raw)
		}
		cmd, stdout, stderr := overlordCmd(f, "call", "b1", "test.ping", "--async", "--queue", "--direct")
		if code := exitCode(t, cmd); code != 0 {
			t.Fatalf("--async --queue: exit %d\n%s", code, stderr)
		}
		qid := strings.TrimSpace(stdout.String())
		cmd, stdout, stderr = overlordCmd(f, "job", "status", qid, "--wait", "--timeout", "60s", "-o", "json")
		if code := exitCode(t, cmd); code != 0 || !strings.Contains(stdout.String(), `"via": "gw2"`) {
			t.Fatalf("--queue job: exit %d\n%s\n%s", code, stdout, stderr)
		}
		cmd, stdout, stderr = overlordCmd(f, "call", "a2", "command.run", "sleep 60", "--async", "--direct")
		if code := exitCode(t, cmd); code != 0 {
			t.Fatalf("--async: exit %d\n%s", code, stderr)
		}
		id := strings.TrimSpace(stdout.String())
		waitRunning(t, f, id, "a2")
		cmd, _, stderr = overlordCmd(f, "job", "cancel", id, "--direct")
		if code := exitCode(t, cmd); code != 0 {
			t.Fatalf("job cancel: exit %d\n%s", code, stderr)
		}
		cmd, stdout, _ = overlordCmd(f, "job", "status", id, "--wait", "--timeout", "60s", "-o", "json")
		exitCode(t, cmd)
		var jd gatewayDoc
		if err := json.Unmarshal(stdout.Bytes(), &jd); err != nil {
			t.Fatal(err)
		}
		if e := jd.Minions["a2"]; jd.State != "FINISHED" || e.Error == nil || e.Error.Kind != "cancelled" || e.Via != "gw1" {
			t.Errorf("cancelled job: %s", stdout)
		}
	})

	t.Run("async job survives its gateway's kill -9", func(t *testing.T) {
		marker := filepath.Join(f.dir, "c1-ran")
		cmd, stdout, stderr := overlordCmd(f, "call", "c1", "command.run", fmt.Sprintf("echo x >> %s; sleep 2; echo done", marker), "--async", "--direct")
		if code := exitCode(t, cmd); code != 0 {
			t.Fatalf("call --async: exit %d\n%s", code, stderr)
		}
		id := strings.TrimSpace(stdout.String())
		waitFile(t, marker)
		gw1.p.kill()
		startGateway(t, f, gw1)
		cmd, stdout, stderr = overlordCmd(f, "job", "status", id, "--wait", "--timeout", "60s", "-o", "json")
		code := exitCode(t, cmd)
		var doc gatewayDoc
		if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
			t.Fatalf("job status: exit %d, %v\n%s\n%s", code, err, stdout, stderr)
		}
		if e := doc.Minions["c1"]; code != 0 || doc.State != "FINISHED" || !e.OK || !strings.Contains(string(e.Result), "done") {
			t.Errorf("job status: exit %d, %s", code, stdout)
		}
		if data, _ := os.ReadFile(marker); string(data) != "x\n" {
			t.Errorf("the command ran %d times, want once", strings.Count(string(data), "x"))
		}
	})

	t.Run("gateway dies mid-call", func(t *testing.T) {
		marker := filepath.Join(f.dir, "a1-ran")
		cmd, stdout, stderr := overlordCmd(f, "call", "a1", "command.run", fmt.Sprintf("echo x >> %s; sleep 3; echo done", marker), "--direct", "-o", "json")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFile(t, marker)
		gw1.p.kill()
		code, err := runWait(cmd)
		if err != nil {
			t.Fatal(err)
		}
		// The call was sent: it is the driver's to adopt through gw2
		// (exit 4), or, if the answer came first, it finished.
		var doc gatewayDoc
		if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil || (code != 4 && code != 0) {
			t.Fatalf("call: exit %d, %v\n%s\n%s", code, err, stdout, stderr)
		}
		cmd, stdout, stderr = overlordCmd(f, "job", "status", doc.JobID, "--wait", "--timeout", "60s", "-o", "json")
		code = exitCode(t, cmd)
		if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
			t.Fatalf("job status: exit %d, %v\n%s\n%s", code, err, stdout, stderr)
		}
		if e := doc.Minions["a1"]; code != 0 || !e.OK || !strings.Contains(string(e.Result), "done") {
			t.Errorf("job status: exit %d\n%s", code, stdout)
		}
		if data, _ := os.ReadFile(marker); string(data) != "x\n" {
			t.Errorf("the command ran %d times, want once", strings.Count(string(data), "x"))
		}
	})

	t.Run("failover when the first gateway is killed", func(t *testing.T) {
		if !gw1.p.exited() {
			gw1.p.kill()
		}
		doc, code, raw := callDoc(t, f, "a*,b1", "test.ping", "--direct")
		if code != 0 {
			t.Fatalf("exit %d, want 0 (gw2 reaches them all):\n%s", code, raw)
		}
		for _, name := range []string{"a1", "a2", "b1"} {
			if e := doc.Minions[name]; !e.OK || e.Via != "gw2" {
				t.Errorf("%s: %+v, want ok via gw2", name, e)
			}
		}
	})

	t.Run("unreachable naming both gateways when both are down", func(t *testing.T) {
		gw2.p.kill()
		doc, code, raw := callDoc(t, f, "a*,b1,c1,d1", "test.ping", "--direct", "--timeout", "20s")
		if code != 1 {
			t.Fatalf("exit %d, want 1:\n%s", code, raw)
		}
		for _, name := range []string{"a1", "a2", "b1"} {
			e := doc.Minions[name]
			if e.OK || e.Error == nil || e.Error.Kind != "unreachable" || !strings.Contains(e.Error.Message, "gw1") || !strings.Contains(e.Error.Message, "gw2") {
				t.Errorf("%s: %+v, want unreachable naming gw1 and gw2", name, e)
			}
		}
		if e := doc.Minions["c1"]; e.Error == nil || e.Error.Kind != "unreachable" || !strings.Contains(e.Error.Message, "gw1") {
			t.Errorf("c1: %+v, want unreachable naming gw1", e)
		}
		if e := doc.Minions["d1"]; !e.OK || e.Via != "" {
			t.Errorf("d1 (direct): %+v, want ok", e)
		}
		// An async job whose gateway stays down past its deadline.
		cmd, stdout, stderr := overlordCmd(f, "call", "c1", "test.ping", "--async", "--timeout", "4s", "--direct")
		if code := exitCode(t, cmd); code != 0 {
			t.Fatalf("--async: exit %d\n%s", code, stderr)
		}
		id := strings.TrimSpace(stdout.String())
		cmd, stdout, stderr = overlordCmd(f, "job", "status", id, "--wait", "--timeout", "60s", "-o", "json")
		code = exitCode(t, cmd)
		var jd gatewayDoc
		if err := json.Unmarshal(stdout.Bytes(), &jd); err != nil {
			t.Fatalf("job status: exit %d, %v\n%s", code, err, stderr)
		}
		if e := jd.Minions["c1"]; code != 1 || jd.State != "FINISHED" || e.Error == nil || e.Error.Kind != "unreachable" || !strings.Contains(e.Error.Message, "gw1") {
			t.Errorf("async job past its deadline with its gateway down: exit %d, want 1 and c1 unreachable naming gw1\n%s", code, stdout)
		}
	})
}

// waitRunning waits until minion's entry of job id has its minion job ID:
// the minion has the job.
func waitRunning(t *testing.T, f *fleet, id, minion string) {
	t.Helper()
	for deadline := time.Now().Add(readyTimeout); ; time.Sleep(100 * time.Millisecond) {
		cmd, stdout, _ := overlordCmd(f, "job", "status", id, "-o", "json")
		exitCode(t, cmd)
		var doc struct {
			Minions map[string]struct {
				MinionJobID string `json:"minion_job_id"`
			} `json:"minions"`
		}
		if json.Unmarshal(stdout.Bytes(), &doc) == nil && doc.Minions[minion].MinionJobID != "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s never reached %s:\n%s", id, minion, stdout)
		}
	}
}

// runWait waits for a started command and returns its exit status.
func runWait(cmd *exec.Cmd) (int, error) {
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok && ee.Exited() {
		return ee.ExitCode(), nil
	}
	return 0, err
}
