package cli_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// overlord transmit makes the call its JSON request describes: the same
// document and exit code as call -o json; a bad request is exit 2 with a
// JSON error document.
func TestTransmit(t *testing.T) {
	h := newHarness(t)
	h.must("ca", "init", "--name", "op")
	h.addMinion("web1")
	h.addDeadMinion("web2")

	transmit := func(req string) result {
		t.Helper()
		h.stdin = req
		defer func() { h.stdin = "" }()
		return h.run("transmit")
	}
	doc := func(r result) map[string]any {
		t.Helper()
		var d map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
			t.Fatalf("stdout is not one JSON document: %v\n%s", err, r.stdout)
		}
		return d
	}

	r := transmit(`{"target": "web1", "module": "command", "method": "run", "args": {"cmd": "echo hi", "max_output": 1000}, "timeout": "20s"}`)
	d := doc(r)
	if r.code != 0 || d["state"] != "FINISHED" || !strings.Contains(r.stdout, `hi\n`) {
		t.Errorf("sync: exit %d\n%s", r.code, r.stdout)
	}
	if r := transmit(`{"target": "web*", "module": "test", "method": "ping", "connect_timeout": "1s"}`); r.code != 1 || doc(r)["summary"].(map[string]any)["failed"] != 1.0 {
		t.Errorf("one minion down: exit %d, want 1\n%s", r.code, r.stdout)
	}
	r = transmit(`{"target": "web1", "module": "test", "method": "ping", "async": true}`)
	if d := doc(r); r.code != 0 || d["job_id"] == nil || d["state"] != "RUNNING" {
		t.Errorf("async: exit %d\n%s", r.code, r.stdout)
	}

	for _, c := range []struct{ name, req, msg string }{
		{"not JSON", `target=web1`, "not a JSON object"},
		{"unknown field", `{"target": "web1", "module": "test", "method": "ping", "tiemout": "1s"}`, `unknown field "tiemout"`},
		{"two objects", `{"target": "web1", "module": "test", "method": "ping"} {}`, "more after it"},
		{"no method", `{"target": "web1", "module": "test"}`, "needs target, module and method"},
		{"bad timeout", `{"target": "web1", "module": "test", "method": "ping", "timeout": "5"}`, "timeout: time: missing unit"},
		{"bad args", `{"target": "web1", "module": "command", "method": "run", "args": {"cmd": "true", "runas": "nobody"}}`, `unknown parameter "runas"`},
		{"queue without async", `{"target": "web1", "module": "test", "method": "ping", "queue": true}`, "queue needs async"},
	} {
		r := transmit(c.req)
		d := doc(r)
		e, _ := d["error"].(map[string]any)
		if r.code != 2 || e["kind"] != "bad_args" || !strings.Contains(e["message"].(string), c.msg) {
			t.Errorf("%s: exit %d %v, want 2 and a bad_args error saying %q", c.name, r.code, d, c.msg)
		}
	}
	if r := transmit(`{"target": "nothing*", "module": "test", "method": "ping"}`); r.code != 3 || doc(r)["error"] == nil {
		t.Errorf("no match: exit %d\n%s", r.code, r.stdout)
	}
}
