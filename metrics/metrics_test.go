package metrics_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/metrics"
	"github.com/overlordhq/overlord/metrics/metricstest"
	"github.com/overlordhq/overlord/status"
)

func ok() status.Result { return status.Result{State: status.Finished, OK: true} }

func failed(kind status.Kind) status.Result {
	return status.Result{State: status.Finished, Error: status.Errorf(kind, "it failed")}
}

// census returns a Config.Census that counts its reads.
func census(c jobs.Census, err error, reads *int) func() (jobs.Census, error) {
	var mu sync.Mutex
	return func() (jobs.Census, error) {
		mu.Lock()
		defer mu.Unlock()
		*reads++
		return c, err
	}
}

func newMetrics(t *testing.T, cfg metrics.Config) *metrics.Metrics {
	t.Helper()
	if cfg.Known == nil {
		cfg.Known = func(module, method string) bool { return module == "test" || module == "command" }
	}
	return metrics.New(cfg)
}

// TestLint: the registry gathers without error, every metric of the
// service is there, and promlint finds nothing wrong with the names,
// types and help texts.
func TestLint(t *testing.T) {
	reads := 0
	m := newMetrics(t, metrics.Config{
		Version: "v1.2.3",
		Census: census(jobs.Census{Jobs: map[status.State]int{status.Running: 1, status.Finished: 2},
			Minions: []string{"web1", "web2"}}, nil, &reads),
		Conns:   func() (int, int) { return 3, 1 },
		Driving: func() int { return 1 },
	})
	ping := m.Method("test", "ping")
	ping.MinionCall("web1", ok(), 2*time.Millisecond)
	ping.MinionCall("web2", failed(status.KindUnreachable), time.Second)
	ping.CallDone(time.Second)
	m.Method("command", "run").Entry("web1", failed(status.KindModuleError))
	m.Enrolment("signed")

	problems, err := testutil.GatherAndLint(m.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	families, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range families {
		got[f.GetName()] = true
	}
	for _, name := range []string{
		"overlord_build_info", "overlord_calls_total", "overlord_results_total",
		"overlord_call_duration_seconds", "overlord_minion_call_duration_seconds",
		"overlord_jobs", "overlord_jobs_open", "overlord_queued_entries", "overlord_minions",
		"overlord_pool_connections_open", "overlord_pool_connections_idle", "overlord_jobs_driving",
		"overlord_enrolment_requests_total", "overlord_store_read_errors_total",
		"go_goroutines", "process_cpu_seconds_total", "promhttp_metric_handler_requests_total",
	} {
		if !got[name] {
			t.Errorf("no metric %s", name)
		}
	}
}

// TestCounts: results by module, method and kind; names the overlord
// does not know and kinds not in the list are other; latency only for
// FINISHED results of synchronous calls.
func TestCounts(t *testing.T) {
	m := newMetrics(t, metrics.Config{})
	ping := m.Method("test", "ping")
	if m.Method("test", "ping") != ping {
		t.Error("Method makes new instruments for a name it has")
	}
	ping.MinionCall("web1", ok(), time.Millisecond)
	ping.MinionCall("web2", ok(), time.Millisecond)
	ping.MinionCall("web3", failed(status.KindUnreachable), time.Millisecond)
	ping.MinionCall("web4", status.Result{State: status.Running, MinionJobID: "j"}, time.Second) // detached: later
	ping.Entry("web4", ok())
	ping.Entry("web5", failed("a_new_kind"))
	ping.CallDone(50 * time.Millisecond)
	m.Method("mystery", "thing").Entry("web1", ok())
	m.Method("other", "x\xff").Entry("web1", ok())
	m.Enrolment("token_expired")
	m.Enrolment("no such outcome")

	want := `
# HELP overlord_results_total Minions' results (entries that ended FINISHED) of the calls the service fanned out and the jobs it drove, by module, method and error kind (ok for a success).
# TYPE overlord_results_total counter
overlord_results_total{kind="ok",method="other",module="other"} 2
overlord_results_total{kind="ok",method="ping",module="test"} 3
overlord_results_total{kind="other",method="ping",module="test"} 1
overlord_results_total{kind="unreachable",method="ping",module="test"} 1
# HELP overlord_calls_total Synchronous calls the service fanned out, by module and method, counted as they end.
# TYPE overlord_calls_total counter
overlord_calls_total{method="other",module="other"} 0
overlord_calls_total{method="ping",module="test"} 1
`
	if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want), "overlord_results_total", "overlord_calls_total"); err != nil {
		t.Error(err)
	}
	if n := value(t, m, "overlord_minion_call_duration_seconds", "module", "test", "method", "ping"); n != 3 {
		t.Errorf("%v latencies of test.ping observed, want 3 (the FINISHED results of synchronous calls)", n)
	}
	if n := value(t, m, "overlord_call_duration_seconds"); n != 1 {
		t.Errorf("%v calls' durations observed, want 1", n)
	}
	for outcome, want := range map[string]float64{"token_expired": 1, "other": 1, "signed": 0} {
		if n := value(t, m, "overlord_enrolment_requests_total", "outcome", outcome); n != want {
			t.Errorf("enrolment requests %s: %v, want %v", outcome, n, want)
		}
	}
}

// value returns the value of the metric name summed over the series with
// the given labels (name, value pairs), -1 if there is none.
func value(t *testing.T, m *metrics.Metrics, name string, labels ...string) float64 {
	t.Helper()
	f, err := metricstest.Gather(m.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	v, ok := f.Value(name, labels...)
	if !ok {
		return -1
	}
	return v
}

// TestReachability: the minions gauge counts the registered minions as
// the service's book (Config.Reach) counts them, and every minion as
// unknown without one.
func TestReachability(t *testing.T) {
	reads := 0
	c := jobs.Census{Jobs: map[status.State]int{}, Minions: []string{"a", "b", "c", "d", "e", "f"}}
	var asked []string
	cfg := metrics.Config{Census: census(c, nil, &reads), CensusTTL: time.Nanosecond,
		Reach: func(registered []string) (int, int, int) { asked = registered; return 3, 2, 1 }}
	m := newMetrics(t, cfg)
	check := func(m *metrics.Metrics, reachable, unreachable, unknown float64) {
		t.Helper()
		for state, want := range map[string]float64{"reachable": reachable, "unreachable": unreachable, "unknown": unknown} {
			if n := value(t, m, "overlord_minions", "reachability", state); n != want {
				t.Errorf("minions %s: %v, want %v", state, n, want)
			}
		}
	}
	check(m, 3, 2, 1)
	if len(asked) != 6 {
		t.Errorf("the book was asked about %v, want the 6 registered minions", asked)
	}
	check(newMetrics(t, metrics.Config{Census: census(c, nil, &reads), CensusTTL: time.Nanosecond}), 0, 0, 6)
}

// TestCensusCached: overlord.db is read at most once per CensusTTL
// whatever the scrapes; a failed read counts an error and keeps the last
// read's values.
func TestCensusCached(t *testing.T) {
	reads := 0
	var mu sync.Mutex
	c := jobs.Census{Jobs: map[status.State]int{status.Running: 2, status.Partial: 1, status.Finished: 7}, Queued: 4}
	read := census(c, nil, &reads)
	m := newMetrics(t, metrics.Config{CensusTTL: time.Hour, Census: func() (jobs.Census, error) {
		return read()
	}})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := m.Gatherer().Gather(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if reads != 1 {
		t.Errorf("8 scrapes read overlord.db %d times, want 1", reads)
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"overlord_jobs", []string{"state", "RUNNING"}, 2},
		{"overlord_jobs", []string{"state", "PARTIAL"}, 1},
		{"overlord_jobs", []string{"state", "FINISHED"}, 7},
		{"overlord_jobs_open", nil, 3},
		{"overlord_queued_entries", nil, 4},
	} {
		if n := value(t, m, tc.name, tc.labels...); n != tc.want {
			t.Errorf("%s%v: %v, want %v", tc.name, tc.labels, n, tc.want)
		}
	}

	// A failed read keeps the last values.
	m2reads := 0
	m2 := newMetrics(t, metrics.Config{CensusTTL: time.Nanosecond, Census: func() (jobs.Census, error) {
		mu.Lock()
		defer mu.Unlock()
		m2reads++
		if m2reads > 1 {
			return jobs.Census{}, errors.New("busy")
		}
		return c, nil
	}})
	value(t, m2, "overlord_jobs_open")
	if n := value(t, m2, "overlord_jobs_open"); n != 3 {
		t.Errorf("after a failed read: jobs_open %v, want the last read's 3", n)
	}
	if n := value(t, m2, "overlord_store_read_errors_total"); n < 1 {
		t.Errorf("store_read_errors_total %v after a failed read", n)
	}
}

// TestNil: a nil *Metrics and its nil *Method do nothing, and the
// handler of none answers 404.
func TestNil(t *testing.T) {
	var m *metrics.Metrics
	mm := m.Method("test", "ping")
	mm.MinionCall("web1", ok(), time.Second)
	mm.Entry("web1", ok())
	mm.CallDone(time.Second)
	m.Enrolment("signed")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("nil metrics' handler: %d", rec.Code)
	}
}

// TestHandler: GET /metrics answers the text format with the build info.
func TestHandler(t *testing.T) {
	m := newMetrics(t, metrics.Config{Version: "v9.9.9"})
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.Contains(body, `overlord_build_info{version="v9.9.9"} 1`) {
		t.Errorf("GET /metrics: %d\n%s", rec.Code, body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
}

// BenchmarkMinionCall is the cost instrumentation adds to each minion's
// result in a call the service fans out (overlord's instrumented step):
// the clock read twice, the latency observed, the result counted by kind
// and the minion's reachability noted, on instruments looked up once per
// call. docs/performance.md has the figure.
func BenchmarkMinionCall(b *testing.B) {
	m := metrics.New(metrics.Config{})
	names := []string{"web1", "web2", "web3", "web4"}
	r := ok()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		mm := m.Method("test", "ping")
		i := 0
		for pb.Next() {
			start := time.Now()
			mm.MinionCall(names[i%len(names)], r, time.Since(start))
			i++
		}
	})
}

// BenchmarkMethod is the lookup of a call's instruments, once per call.
func BenchmarkMethod(b *testing.B) {
	m := metrics.New(metrics.Config{})
	b.ReportAllocs()
	for b.Loop() {
		m.Method("test", "ping")
	}
}
