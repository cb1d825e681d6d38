//go:build linux

package e2e

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/overlordhq/overlord/metrics/metricstest"
)

// TestServeMetrics: after a few calls through 'overlord serve' (one ok,
// one failing, one to a stopped minion) and an async job it drove, GET
// /metrics on its socket counts them as a user would check: calls and
// results by module.method and kind, the calls' latencies, jobs by state,
// and the stopped minion unreachable.
func TestServeMetrics(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2")
	p, _ := startServe(t, f)
	waitService(t, f, p)

	if out, code, stderr := callJSON(t, f, "*", "test.ping"); code != 0 {
		t.Fatalf("call '*' test.ping: exit %d\n%s\n%s", code, out, stderr)
	}
	if out, code, stderr := callJSON(t, f, "web1", "command.run", "exit 3"); code != 1 {
		t.Fatalf("call web1 command.run 'exit 3': exit %d, want 1\n%s\n%s", code, out, stderr)
	}
	id := callAsync(t, f, "web1", "test.ping")
	if j, code, stderr := jobStatus(t, f, id, "--wait", "--timeout", "60s"); code != 0 || j.State != "FINISHED" {
		t.Fatalf("job status --wait: exit %d, job %s\n%s", code, j, stderr)
	}
	if err := f.stop(mustMinion(t, f, "web2")); err != nil {
		t.Fatal(err)
	}
	if out, code, stderr := callJSON(t, f, "web2", "test.ping", "--connect-timeout", "2s"); code != 1 {
		t.Fatalf("call to the stopped web2: exit %d, want 1\n%s\n%s", code, out, stderr)
	}

	sock := filepath.Join(f.stateDir, "overlord.sock")
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := metricstest.Scrape(ctx, client, "http://overlord/metrics")
	if err != nil {
		t.Fatalf("scraping %s: %v\n%s", sock, err, p.logTail(20))
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		// Each minion's result once: two of the first call, the async
		// job's (driven by the service), and the stopped minion's.
		{"overlord_results_total", []string{"module", "test", "method", "ping", "kind", "ok"}, 3},
		{"overlord_results_total", []string{"module", "test", "method", "ping", "kind", "unreachable"}, 1},
		{"overlord_results_total", []string{"module", "command", "method", "run", "kind", "module_error"}, 1},
		{"overlord_results_total", []string{"module", "command", "method", "run", "kind", "ok"}, -1},
		// The synchronous calls the service fanned out.
		{"overlord_calls_total", []string{"module", "test", "method", "ping"}, 2},
		{"overlord_calls_total", []string{"module", "command", "method", "run"}, 1},
		{"overlord_call_duration_seconds", nil, 3},
		{"overlord_minion_call_duration_seconds", []string{"module", "test", "method", "ping"}, 3},
		{"overlord_minion_call_duration_seconds", []string{"module", "command", "method", "run"}, 1},
		{"overlord_jobs", []string{"state", "FINISHED"}, 4},
		{"overlord_jobs", []string{"state", "RUNNING"}, 0},
		{"overlord_jobs_open", nil, 0},
		{"overlord_queued_entries", nil, 0},
		{"overlord_minions", []string{"reachability", "reachable"}, 1},
		{"overlord_minions", []string{"reachability", "unreachable"}, 1},
		{"overlord_enrolment_requests_total", []string{"outcome", "signed"}, 0},
		{"overlord_build_info", nil, 1},
	} {
		v, ok := m.Value(tc.name, tc.labels...)
		if !ok {
			v = -1 // no such series
		}
		if v != tc.want {
			t.Errorf("%s%v = %v, want %v (-1: no such series)", tc.name, tc.labels, v, tc.want)
		}
	}
	if v, _ := m.Value("overlord_pool_connections_open"); v < 1 {
		t.Errorf("overlord_pool_connections_open = %v, want the connection to web1 at least", v)
	}
	if v, _ := m.Value("process_resident_memory_bytes"); v <= 0 {
		t.Errorf("process_resident_memory_bytes = %v: no process collector", v)
	}
}
