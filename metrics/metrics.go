// Package metrics is the overlord service's Prometheus metrics
// (docs/metrics.md): a registry of its own (not the global one) with the
// Go and process collectors, the service's counters, gauges and
// histograms, and the HTTP handler that serves them (GET /metrics).
//
// # Basics
//
// The service (overlord.OpenService) makes one Metrics with New and
// reports to it where its work happens: each synchronous call it fans
// out (Method, then CallDone), each minion's call in it (MinionCall),
// each entry its drivers set (Entry), each enrolment request
// (Enrolment). Reachability is the service's own book (Config.Reach),
// which the API shows per minion too. What is in overlord.db
// (jobs by state, queued entries, the registered minions) is read when
// scraped, at most every CensusTTL, so a storm of scrapes reads the
// store once.
//
// Every method is safe on a nil *Metrics or *Method and does nothing:
// code shared with plain CLI processes, which have no metrics, pays
// nothing.
//
// # Caveats
//
// Label values stay few: module.method only for the methods the overlord
// knows (built-ins, and plugins a cached description names: Config.Known),
// at most maxMethods of them, every other one counted as
// module="other", method="other"; error kinds from a fixed list, any
// other as "other". Minion names are never labels: the reachability gauge
// counts minions.
package metrics

import (
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/overlordhq/overlord/enrolment"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/status"
)

// Namespace prefixes every metric of the service.
const Namespace = "overlord"

// DefaultCensusTTL is how long one read of overlord.db serves scrapes.
const DefaultCensusTTL = 5 * time.Second

const (
	// maxMethods bounds the module.method label pairs; past it, new ones
	// are counted as other.
	maxMethods = 256
	// knownRecheck is how long a method found unknown stays other before
	// Config.Known is asked again (its plugin may be described since).
	knownRecheck = 30 * time.Second
	// Other is the module and method label of the methods not known, and
	// the kind of an error kind not in the list.
	Other = "other"
	// maxScrapes bounds the scrapes served at once; more get HTTP 503.
	maxScrapes = 4
)

// durationBuckets are the histograms' buckets, in seconds: a warm
// test.ping on loopback is under a millisecond, a call waits up to its
// --timeout (30 s by default).
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

// Config is what the metrics read from the service when scraped. A nil
// function reports nothing (Census) or zero (Conns, Driving); a nil Known
// knows every method.
type Config struct {
	// Version is the service's version (overlord_build_info).
	Version string
	// Census reads overlord.db (jobs.Store.Census), at most every
	// CensusTTL (DefaultCensusTTL if 0).
	Census    func() (jobs.Census, error)
	CensusTTL time.Duration
	// Conns returns the pool's open and idle connections to minions.
	Conns func() (open, idle int)
	// Driving returns how many async jobs the service drives now.
	Driving func() int
	// Known reports whether module.method is a method the overlord knows
	// (a built-in, or a plugin a cached description names). It is asked
	// once per new name (again after knownRecheck for an unknown one), not
	// per result.
	Known func(module, method string) bool
	// Reach counts the registered minions by what the service last saw
	// of each (overlord's reachability book, the one owner of it): an
	// answer, a failure to reach it, or nothing yet.
	Reach  func(registered []string) (reachable, unreachable, unknown int)
	Logger *slog.Logger
}

// Metrics is the service's registry and its instruments. New, then hand
// it to the code that reports.
type Metrics struct {
	cfg     Config
	logger  *slog.Logger
	reg     *prometheus.Registry
	handler http.Handler

	calls       *prometheus.CounterVec   // module, method
	results     *prometheus.CounterVec   // module, method, kind
	callTime    prometheus.Histogram     // a whole synchronous call
	minionTime  *prometheus.HistogramVec // module, method
	enrolments  *prometheus.CounterVec   // outcome
	storeErrors prometheus.Counter

	mu        sync.RWMutex
	methods   map[methodKey]*Method
	unknown   map[methodKey]time.Time // names found unknown, and when
	other     *Method                 // module="other", method="other": made when first needed
	otherOnce sync.Once

	censusMu sync.Mutex
	census   jobs.Census
	censusAt time.Time
	censusOK bool // census holds a read
}

type methodKey struct{ module, method string }

// New returns the metrics with their registry: the Go and process
// collectors, and the service's own.
func New(cfg Config) *Metrics {
	if cfg.CensusTTL <= 0 {
		cfg.CensusTTL = DefaultCensusTTL
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{cfg: cfg, logger: logger.With("component", "metrics"), reg: prometheus.NewRegistry(),
		methods: map[methodKey]*Method{}, unknown: map[methodKey]time.Time{}}
	m.calls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "calls_total",
		Help: "Synchronous calls the service fanned out, by module and method, counted as they end.",
	}, []string{"module", "method"})
	m.results = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "results_total",
		Help: "Minions' results (entries that ended FINISHED) of the calls the service fanned out and the jobs it drove, by module, method and error kind (ok for a success).",
	}, []string{"module", "method", "kind"})
	m.callTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "call_duration_seconds",
		Help:    "How long the service took to fan a synchronous call out, from the request to the last minion's entry.",
		Buckets: durationBuckets,
	})
	m.minionTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "minion_call_duration_seconds",
		Help:    "How long one minion's call took in a synchronous call the service fanned out (its result FINISHED), by module and method.",
		Buckets: durationBuckets,
	}, []string{"module", "method"})
	m.enrolments = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "enrolment_requests_total",
		Help: "Enrolment requests the endpoint answered, by outcome: signed, pending, or the kind of the refusal.",
	}, []string{"outcome"})
	for _, o := range enrolOutcomes {
		m.enrolments.WithLabelValues(o)
	}
	m.storeErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "store_read_errors_total",
		Help: "Reads of overlord.db for a scrape that failed (a busy store): the jobs and minions gauges then show the last read.",
	})
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help:        "Always 1; the service's version as a label.",
		ConstLabels: prometheus.Labels{"version": cfg.Version},
	})
	build.Set(1)
	conns := func(idle bool) func() float64 {
		return func() float64 {
			if cfg.Conns == nil {
				return 0
			}
			o, i := cfg.Conns()
			if idle {
				return float64(i)
			}
			return float64(o)
		}
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.calls, m.results, m.callTime, m.minionTime, m.enrolments, m.storeErrors, build,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "pool_connections_open",
			Help: "Connections to minions the service's pool holds open.",
		}, conns(false)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "pool_connections_idle",
			Help: "Open connections of the pool beyond the calls in flight to their minion.",
		}, conns(true)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "jobs_driving",
			Help: "Async jobs the service drives now (its scheduler).",
		}, func() float64 {
			if cfg.Driving == nil {
				return 0
			}
			return float64(cfg.Driving())
		}),
		newCensusCollector(m),
	)
	m.handler = promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(m.logger.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            m.reg,
		MaxRequestsInFlight: maxScrapes,
		Timeout:             30 * time.Second,
	}))
	return m
}

// Handler returns the handler of GET /metrics: the registry in
// Prometheus's text format (or OpenMetrics, gzip, as the scraper asks).
// On a nil *Metrics it answers 404.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return m.handler
}

// Gatherer returns the registry, for tests and for mounting elsewhere.
func (m *Metrics) Gatherer() prometheus.Gatherer {
	if m == nil {
		return prometheus.NewRegistry()
	}
	return m.reg
}

// Method returns module.method's instruments, made the first time the
// name is seen: a caller looks them up once per call or job and reports
// each result to them. A method the overlord does not know, or one past
// maxMethods, gets the instruments of module="other", method="other".
func (m *Metrics) Method(module, method string) *Method {
	if m == nil {
		return nil
	}
	k := methodKey{module, method}
	m.mu.RLock()
	mm, ok := m.methods[k]
	m.mu.RUnlock()
	if ok {
		return mm
	}
	return m.resolve(k)
}

// resolve decides which instruments a name not made yet gets.
func (m *Metrics) resolve(k methodKey) *Method {
	m.mu.RLock()
	at, unknown := m.unknown[k]
	full := len(m.methods) >= maxMethods
	m.mu.RUnlock()
	if full || (unknown && time.Since(at) < knownRecheck) {
		return m.otherMethod()
	}
	// Outside the lock: Known may read overlord.db.
	known := utf8.ValidString(k.module) && utf8.ValidString(k.method) &&
		(m.cfg.Known == nil || m.cfg.Known(k.module, k.method))
	m.mu.Lock()
	defer m.mu.Unlock()
	if mm, ok := m.methods[k]; ok {
		return mm
	}
	if !known || len(m.methods) >= maxMethods {
		if len(m.unknown) >= maxMethods {
			clear(m.unknown)
		}
		m.unknown[k] = time.Now()
		return m.otherMethod()
	}
	delete(m.unknown, k)
	mm := m.newMethod(k.module, k.method)
	m.methods[k] = mm
	return mm
}

// otherMethod returns the instruments of the methods not known.
func (m *Metrics) otherMethod() *Method {
	m.otherOnce.Do(func() { m.other = m.newMethod(Other, Other) })
	return m.other
}

func (m *Metrics) newMethod(module, method string) *Method {
	return &Method{m: m, module: module, method: method,
		calls:   m.calls.WithLabelValues(module, method),
		latency: m.minionTime.WithLabelValues(module, method)}
}

// Method is one module.method's instruments (Metrics.Method).
type Method struct {
	m              *Metrics
	module, method string
	calls          prometheus.Counter
	latency        prometheus.Observer
	// results has the counter of each kind (kindNames), made at its
	// first result.
	results [len(kindNames)]atomic.Pointer[prometheus.Counter]
}

// CallDone counts a synchronous call the service fanned out, which took
// took from its request to its last entry.
func (mm *Method) CallDone(took time.Duration) {
	if mm == nil {
		return
	}
	mm.calls.Inc()
	mm.m.callTime.Observe(took.Seconds())
}

// MinionCall reports one minion's part of a synchronous call: its result
// and latency if it FINISHED (a minion that keeps the call past the wait
// reports its result later, through its job's driver: Entry).
func (mm *Method) MinionCall(minion string, r status.Result, took time.Duration) {
	if mm == nil {
		return
	}
	if r.State == status.Finished {
		mm.latency.Observe(took.Seconds())
		mm.result(r)
	}
}

// Entry reports an entry an async job's driver set: its result if it
// FINISHED. The driver reports each entry's end once.
func (mm *Method) Entry(minion string, r status.Result) {
	if mm == nil {
		return
	}
	if r.State == status.Finished {
		mm.result(r)
	}
}

// result counts a FINISHED result by its kind.
func (mm *Method) result(r status.Result) {
	i := 0 // ok
	if r.Error != nil {
		i = kindIndex(r.Error.Kind)
	}
	p := mm.results[i].Load()
	if p == nil {
		c := mm.m.results.WithLabelValues(mm.module, mm.method, kindNames[i])
		p = &c
		mm.results[i].Store(p) // a racing Store stores the same counter
	}
	(*p).Inc()
}

// kindNames are the kind label's values: ok, the error kinds of status,
// and other for a kind not among them (a newer minion's).
var kindNames = [...]string{"ok",
	string(status.KindUnreachable), string(status.KindTLS), string(status.KindTimeout),
	string(status.KindUnknownModule), string(status.KindUnknownMethod), string(status.KindBadArgs),
	string(status.KindModuleError), string(status.KindDenied), string(status.KindLost),
	string(status.KindCancelled), string(status.KindSkipped), string(status.KindInternal),
	Other}

// kindIndex returns k's index in kindNames; "" is ok.
func kindIndex(k status.Kind) int {
	if k == "" {
		return 0
	}
	for i, n := range kindNames[1 : len(kindNames)-1] {
		if string(k) == n {
			return i + 1
		}
	}
	return len(kindNames) - 1
}

// enrolOutcomes are the enrolment counter's outcomes, made at New so
// that each is there from the start.
var enrolOutcomes = []string{enrolment.StateSigned, enrolment.StatePending,
	enrolment.KindBadRequest, enrolment.KindTokenInvalid, enrolment.KindTokenExpired, enrolment.KindTokenUsedUp,
	enrolment.KindRejected, enrolment.KindRevoked, enrolment.KindConflict, enrolment.KindBusy, enrolment.KindInternal}

// Enrolment counts an enrolment request the endpoint answered: outcome is
// the reply's state (signed, pending) or the refusal's kind; another is
// counted as other.
func (m *Metrics) Enrolment(outcome string) {
	if m == nil {
		return
	}
	if !slices.Contains(enrolOutcomes, outcome) {
		outcome = Other
	}
	m.enrolments.WithLabelValues(outcome).Inc()
}

// readCensus returns overlord.db's census, read again if the last read is
// older than CensusTTL; concurrent scrapes wait for one read. A failed
// read keeps the last one (false if there is none), and is not tried
// again before CensusTTL either.
func (m *Metrics) readCensus() (jobs.Census, bool) {
	if m.cfg.Census == nil {
		return jobs.Census{}, false
	}
	m.censusMu.Lock()
	defer m.censusMu.Unlock()
	if !m.censusAt.IsZero() && time.Since(m.censusAt) < m.cfg.CensusTTL {
		return m.census, m.censusOK
	}
	c, err := m.cfg.Census()
	m.censusAt = time.Now()
	if err != nil {
		m.storeErrors.Inc()
		m.logger.Debug("could not read overlord.db for the metrics; showing the last read", "err", err)
		return m.census, m.censusOK
	}
	m.census, m.censusOK = c, true
	return c, true
}

// reachability counts the registered minions by their latest outcome.
func (m *Metrics) reachability(registered []string) (reachable, unreachable, unknown int) {
	if m.cfg.Reach == nil {
		return 0, 0, len(registered)
	}
	return m.cfg.Reach(registered)
}

// censusCollector gives the gauges read from overlord.db at a scrape.
type censusCollector struct {
	m                           *Metrics
	jobs, open, queued, minions *prometheus.Desc
}

func newCensusCollector(m *Metrics) *censusCollector {
	name := func(n string) string { return prometheus.BuildFQName(Namespace, "", n) }
	return &censusCollector{m: m,
		jobs:    prometheus.NewDesc(name("jobs"), "Jobs in overlord.db by state (RUNNING, PARTIAL, FINISHED).", []string{"state"}, nil),
		open:    prometheus.NewDesc(name("jobs_open"), "Jobs not FINISHED (RUNNING or PARTIAL).", nil, nil),
		queued:  prometheus.NewDesc(name("queued_entries"), "Entries of open --queue jobs waiting for their minion to come back.", nil, nil),
		minions: prometheus.NewDesc(name("minions"), "Registered minions by the latest outcome the service saw: reachable (an answer), unreachable (kind unreachable or tls), unknown (none yet).", []string{"reachability"}, nil),
	}
}

func (c *censusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.jobs
	ch <- c.open
	ch <- c.queued
	ch <- c.minions
}

func (c *censusCollector) Collect(ch chan<- prometheus.Metric) {
	cs, ok := c.m.readCensus()
	if !ok {
		return
	}
	for _, st := range []status.State{status.Running, status.Partial, status.Finished} {
		ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(cs.Jobs[st]), string(st))
	}
	ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(cs.Jobs[status.Running]+cs.Jobs[status.Partial]))
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(cs.Queued))
	r, u, k := c.m.reachability(cs.Minions)
	ch <- prometheus.MustNewConstMetric(c.minions, prometheus.GaugeValue, float64(r), "reachable")
	ch <- prometheus.MustNewConstMetric(c.minions, prometheus.GaugeValue, float64(u), "unreachable")
	ch <- prometheus.MustNewConstMetric(c.minions, prometheus.GaugeValue, float64(k), "unknown")
}
