package overlord_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/overlordhq/overlord/enrolment"
	"github.com/overlordhq/overlord/metrics/metricstest"
	"github.com/overlordhq/overlord/overlord"
)

// socketClient returns an HTTP client to the service's socket.
func socketClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
}

// The service's metrics, scraped on its socket, count what it did: the
// calls it fanned out and their results by method and kind, the result
// of an async job it drove, the minions it reached and the one it could
// not, the enrolment request it refused, and what overlord.db holds.
func TestServiceMetrics(t *testing.T) {
	o := newOverlord(t)
	startMinion(t, o, "web1")
	startMinion(t, o, "web2")
	addDeadMinion(t, o, "dead1")
	svc := openService(t, o)
	c := viaService(t, o)
	call := func(target, module, method string, words ...string) {
		t.Helper()
		p, err := c.Prepare(overlord.CallSpec{Target: target, Module: module, Method: method, Words: words, ConnectTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Call(context.Background(), p, nil); err != nil {
			t.Fatal(err)
		}
	}
	call("*", "test", "ping")
	call("web1", "command", "run", "exit 3")
	p, err := c.Prepare(overlord.CallSpec{Target: "web1", Module: "test", Method: "ping"})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := c.Submit(p, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	waitFinished(t, o, rec.ID)

	// An enrolment request refused (no JSON).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep, err := o.NewEndpoint(overlord.EndpointConfig{Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	if err := ep.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ep.Close(context.Background()) })
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Post("https://"+ep.Addr().String()+enrolment.Path, "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	f, err := metricstest.Scrape(context.Background(), socketClient(svc.Socket()), "http://overlord"+overlord.MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"overlord_calls_total", []string{"module", "test", "method", "ping"}, 1},
		{"overlord_calls_total", []string{"module", "command", "method", "run"}, 1},
		{"overlord_results_total", []string{"module", "test", "method", "ping", "kind", "unreachable"}, 1},
		{"overlord_results_total", []string{"module", "command", "method", "run", "kind", "module_error"}, 1},
		// Two synchronous, one async (the in-process minion runs no
		// runner: its kind does not matter here).
		{"overlord_results_total", []string{"module", "test", "method", "ping"}, 4},
		{"overlord_call_duration_seconds", nil, 2},
		{"overlord_minion_call_duration_seconds", []string{"module", "test", "method", "ping"}, 3},
		{"overlord_minions", []string{"reachability", "reachable"}, 2},
		{"overlord_minions", []string{"reachability", "unreachable"}, 1},
		{"overlord_minions", []string{"reachability", "unknown"}, 0},
		{"overlord_jobs", []string{"state", "FINISHED"}, 3},
		{"overlord_jobs_open", nil, 0},
		{"overlord_enrolment_requests_total", []string{"outcome", "bad_request"}, 1},
		{"overlord_build_info", nil, 1},
	} {
		if v, ok := f.Value(tc.name, tc.labels...); !ok || v != tc.want {
			t.Errorf("%s%v = %v (found: %v), want %v", tc.name, tc.labels, v, ok, tc.want)
		}
	}
	if v, _ := f.Value("overlord_pool_connections_open"); v < 2 {
		t.Errorf("pool connections open: %v, want at least one to each of web1 and web2", v)
	}
}
