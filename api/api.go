// Package api is the overlord service's HTTP API (docs/api.md): jobs,
// minions and groups as JSON under /v1/, for programs and for the web
// dashboard. Its JSON is the CLI's (docs/json-output.md), so one parser
// reads both; its errors are {"error": {"kind", "message"}} with the
// CLI's kinds.
//
// The API serves a caller the request's context names (WithCaller): the
// service's HTTPS listener puts there the identity of a verified client
// certificate of the overlord role (RequireCertificate), the dashboard
// its session's.
package api

import (
	"context"
	"crypto/x509"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

// Error kinds the API adds to the CLI's (status.Kind*).
const (
	KindUnauthenticated status.Kind = "unauthenticated" // no valid credential (HTTP 401)
	KindNotFound        status.Kind = "not_found"       // no such job, minion or route (HTTP 404)
	KindNoMatch         status.Kind = "no_match"        // the target matched no minion (HTTP 422; the CLI's exit 3)
	KindConflict        status.Kind = "conflict"        // the job cannot do that now (HTTP 409)
	KindBusy            status.Kind = "busy"            // as many event streams are open as the service keeps (HTTP 503)
)

// List limits of GET /v1/jobs.
const (
	DefaultListLimit = 50
	MaxListLimit     = 1000
)

// Caller is who makes an API request.
type Caller struct {
	Name string // a certificate's common name, or the dashboard's "dashboard"
	Via  string // "cert" (a client certificate) or "ui" (a dashboard session)
}

// String is how jobs record the caller (jobs.Record.SubmittedBy).
func (c Caller) String() string {
	if c.Via == "cert" {
		return "api:" + c.Name
	}
	return c.Via + ":" + c.Name
}

type callerKey struct{}

// WithCaller returns ctx carrying c, for the API to serve.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller ctx carries.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok && c.Name != ""
}

// Config configures an API.
type Config struct {
	// Overlord is the service's: its calls go through the service's pool
	// and its async jobs to the service's scheduler.
	Overlord *overlord.Overlord
	Logger   *slog.Logger
	// Metrics, if set, is served at GET /metrics; else the service's
	// (Overlord.MetricsHandler), once it runs.
	Metrics http.Handler
	// EventPoll is how often an event stream looks at the job (default
	// 250 ms).
	EventPoll time.Duration
	// MaxEventStreams bounds the event streams open at once (default
	// DefaultMaxEventStreams).
	MaxEventStreams int
}

// API serves the routes. New, then Handler.
type API struct {
	o       *overlord.Overlord
	logger  *slog.Logger
	metrics http.Handler
	poll    time.Duration
	mux     *http.ServeMux
	done    chan struct{} // closed by Close: event streams end
	closing sync.Once
	slots   chan struct{} // one per event stream open
	wg      sync.WaitGroup

	mu       sync.Mutex
	watchers map[string]*watcher // by job ID: the jobs with streams open
	closed   bool
}

// Close ends the event streams open now and those opened later, so that
// the server's shutdown need not wait for them (a write to a client that
// does not read is cut short), and waits for their jobs' watchers to
// stop. Calling it twice is harmless.
func (a *API) Close() {
	a.closing.Do(func() { close(a.done) })
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.wg.Wait()
}

//go:embed openapi.json
var openAPI []byte

// route is one of the API's routes: the table the mux is built from and
// the OpenAPI test checks the document against.
type route struct {
	method, path string // path in OpenAPI's form: /v1/jobs/{id}
	handler      func(*API, http.ResponseWriter, *http.Request)
}

var routes = []route{
	{"POST", "/v1/jobs", (*API).submit},
	{"POST", "/v1/jobs/check", (*API).check},
	{"GET", "/v1/jobs", (*API).listJobs},
	{"GET", "/v1/jobs/{id}", (*API).getJob},
	{"POST", "/v1/jobs/{id}/cancel", (*API).cancel},
	{"GET", "/v1/jobs/{id}/events", (*API).events},
	{"GET", "/v1/minions", (*API).listMinions},
	{"GET", "/v1/minions/{name}", (*API).getMinion},
	{"GET", "/v1/groups", (*API).groups},
	{"GET", "/v1/inventory", (*API).inventory},
	{"POST", "/v1/inventory", (*API).snapshot},
	{"GET", "/v1/inventory/versions", (*API).inventoryVersions},
	{"GET", "/v1/inventory/diff", (*API).inventoryDiff},
	{"GET", "/v1/openapi.json", (*API).openapi},
}

// New returns the API over cfg.Overlord.
func New(cfg Config) *API {
	if cfg.MaxEventStreams <= 0 {
		cfg.MaxEventStreams = DefaultMaxEventStreams
	}
	a := &API{o: cfg.Overlord, logger: cfg.Logger, metrics: cfg.Metrics, poll: cfg.EventPoll, done: make(chan struct{}),
		slots: make(chan struct{}, cfg.MaxEventStreams), watchers: map[string]*watcher{}}
	if a.logger == nil {
		a.logger = slog.New(slog.DiscardHandler)
	}
	a.logger = a.logger.With("component", "api")
	if a.poll <= 0 {
		a.poll = 250 * time.Millisecond
	}
	a.mux = http.NewServeMux()
	// paths matches a route's path whatever the method, for the 405 of
	// a route called with another method than its own.
	paths := http.NewServeMux()
	allow := map[string][]string{}
	for _, rt := range routes {
		h := rt.handler
		a.mux.HandleFunc(rt.method+" "+rt.path, func(w http.ResponseWriter, r *http.Request) { h(a, w, r) })
		if allow[rt.path] == nil {
			paths.HandleFunc(rt.path, func(http.ResponseWriter, *http.Request) {})
		}
		allow[rt.path] = append(allow[rt.path], rt.method)
	}
	for _, methods := range allow {
		slices.Sort(methods)
	}
	a.mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := paths.Handler(r); allow[pattern] != nil {
			w.Header().Set("Allow", strings.Join(allow[pattern], ", "))
			writeError(w, http.StatusMethodNotAllowed, status.KindBadArgs, "%s %s: the route takes %s", r.Method, r.URL.Path, strings.Join(allow[pattern], " or "))
			return
		}
		writeError(w, http.StatusNotFound, KindNotFound, "no such route: %s %s (GET /v1/openapi.json lists them)", r.Method, r.URL.Path)
	})
	a.mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		h := a.metrics
		if h == nil && a.o != nil {
			h = a.o.MetricsHandler()
		}
		if h == nil {
			writeError(w, http.StatusNotFound, KindNotFound, "this service has no metrics")
			return
		}
		h.ServeHTTP(w, r)
	})
	return a
}

// Handler serves the API to the caller each request's context names (a
// request without one gets 401), and logs every request with its
// caller.
func (a *API) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := CallerFrom(r.Context())
		if !ok {
			writeError(w, http.StatusUnauthorized, KindUnauthenticated, "no credential: the API needs a client certificate of the overlord role")
			return
		}
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		a.mux.ServeHTTP(sw, r)
		a.logger.Info("api", "caller", c.String(), "method", r.Method, "path", r.URL.Path,
			"status", sw.code, "took", time.Since(start).Round(time.Microsecond), "from", r.RemoteAddr)
	})
}

// RequireCertificate serves next to requests whose TLS client certificate
// the overlord's CA issued with the overlord role and has not revoked,
// with that certificate's name as the caller; others get 401 (no valid
// certificate) or 403 (another role, or revoked) with a JSON error. The
// listener asks for a certificate without requiring one
// (tls.RequestClientCert): minions enrolling have none.
func (a *API) RequireCertificate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, code, err := a.certCaller(r)
		if err != nil {
			kind := KindUnauthenticated
			switch code {
			case http.StatusForbidden:
				kind = status.KindDenied
			case http.StatusInternalServerError:
				kind = status.KindInternal
			}
			a.logger.Info("api refused", "method", r.Method, "path", r.URL.Path, "from", r.RemoteAddr, "status", code, "err", err)
			writeError(w, code, kind, "%v", err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithCaller(r.Context(), c)))
	})
}

// certCaller checks the request's client certificate.
func (a *API) certCaller(r *http.Request) (Caller, int, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return Caller{}, http.StatusUnauthorized, errors.New("no client certificate: the API needs an identity of the overlord role (overlord ca issue NAME), e.g. curl --cert NAME.crt --key NAME.key --cacert ca.crt")
	}
	ca, err := a.o.CACert()
	if err != nil {
		return Caller{}, http.StatusInternalServerError, err
	}
	leaf := r.TLS.PeerCertificates[0]
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return Caller{}, http.StatusUnauthorized, fmt.Errorf("client certificate %q is not valid for this overlord's CA: %v", leaf.Subject.CommonName, err)
	}
	// The CA's certificate, of another role: refused by role (403), not
	// as unknown (401).
	if role := certs.RoleOf(leaf); role != certs.RoleOverlord || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return Caller{}, http.StatusForbidden, fmt.Errorf("client certificate %q has role %q: the API takes identities of the overlord role", leaf.Subject.CommonName, role)
	}
	crl, err := a.o.CRL(ca)
	if err != nil {
		return Caller{}, http.StatusInternalServerError, err
	}
	if err := certs.CheckRevoked(crl, leaf); err != nil {
		return Caller{}, http.StatusForbidden, err
	}
	return Caller{Name: leaf.Subject.CommonName, Via: "cert"}, http.StatusOK, nil
}

// statusWriter remembers the status code written, for the log.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (Flush, write
// deadlines).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// errorDoc is every error's JSON: the CLI's `{"error": {"kind", "message"}}`.
type errorDoc struct {
	Error struct {
		Kind    status.Kind `json:"kind"`
		Message string      `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, code int, kind status.Kind, format string, args ...any) {
	var d errorDoc
	d.Error.Kind, d.Error.Message = kind, fmt.Sprintf(format, args...)
	writeJSON(w, code, d)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// storeError answers err from the store: 404 for a job or minion that is
// not there, 400 for an ambiguous ID prefix, 500 for anything else.
func (a *API) storeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		writeError(w, http.StatusNotFound, KindNotFound, "%v", err)
	case errors.Is(err, jobs.ErrAmbiguous):
		writeError(w, http.StatusBadRequest, status.KindBadArgs, "%v", err)
	default:
		a.logger.Warn("api: store", "err", err)
		writeError(w, http.StatusInternalServerError, status.KindInternal, "%v", err)
	}
}

// prepare reads a call request from r and resolves it; it answers the
// error itself and returns nil if it cannot.
func (a *API) prepare(w http.ResponseWriter, r *http.Request) (*overlord.Prepared, overlord.CallRequest) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, status.KindBadArgs, "Content-Type must be application/json")
		return nil, overlord.CallRequest{}
	}
	req, err := overlord.DecodeCallRequest(http.MaxBytesReader(w, r.Body, overlord.MaxCallRequest))
	var spec overlord.CallSpec
	if err == nil {
		spec, err = req.Spec()
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, status.KindBadArgs, "the request is over %d MiB", tooBig.Limit>>20)
		} else {
			writeError(w, http.StatusBadRequest, status.KindBadArgs, "%s", overlord.RequestMessage(err))
		}
		return nil, req
	}
	p, err := a.o.Prepare(spec)
	if err != nil {
		if msg, ok := overlord.PrepareMessage(spec, err); ok {
			writeError(w, http.StatusBadRequest, status.KindBadArgs, "%s", msg)
		} else if errors.Is(err, overlord.ErrNoMatch) {
			writeError(w, http.StatusUnprocessableEntity, KindNoMatch, "%v", err)
		} else {
			writeError(w, http.StatusBadRequest, status.KindBadArgs, "%v", err)
		}
		return nil, req
	}
	if c, ok := CallerFrom(r.Context()); ok {
		p.SubmittedBy = c.String()
	}
	return p, req
}

// submit is POST /v1/jobs: transmit's request; an async job is answered
// at once (201), a synchronous call when it has ended or its wait has
// (200, the job document as `call -o json` prints it).
func (a *API) submit(w http.ResponseWriter, r *http.Request) {
	p, req := a.prepare(w, r)
	if p == nil {
		return
	}
	if req.Async {
		var opts []overlord.SubmitOption
		if req.Queue {
			opts = append(opts, overlord.Queue())
		}
		rec, err := a.o.Submit(p, p.Spec.Timeout, opts...)
		if rec.ID == "" {
			writeError(w, http.StatusInternalServerError, status.KindInternal, "%v", err)
			return
		}
		if err != nil {
			a.logger.Warn("api: job submitted, driver not started", "job", rec.ID, "err", err)
		}
		rec, entries, err := a.o.Store.Job(rec.ID)
		if err != nil {
			a.storeError(w, err)
			return
		}
		w.Header().Set("Location", "/v1/jobs/"+rec.ID)
		writeJSON(w, http.StatusCreated, rec.Status(entries))
		return
	}
	// The answer comes when the wait ends: the server's write deadline
	// must not end it first.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(p.Spec.Timeout + time.Minute))
	job, err := a.o.Call(r.Context(), p, nil)
	if job.JobID == "" {
		writeError(w, http.StatusInternalServerError, status.KindInternal, "%v", err)
		return
	}
	if err != nil {
		a.logger.Warn("api: call", "job", job.JobID, "err", err)
	}
	writeJSON(w, http.StatusOK, job)
}

// checkReply is POST /v1/jobs/check's answer.
type checkReply struct {
	Minions    []string       `json:"minions"`
	Module     string         `json:"module"`
	Method     string         `json:"method"`
	Args       map[string]any `json:"args"`
	Positional []any          `json:"positional,omitempty"`
	Notes      []string       `json:"notes,omitempty"`
}

// check is POST /v1/jobs/check: the request checked and resolved as
// POST /v1/jobs would, without calling anyone.
func (a *API) check(w http.ResponseWriter, r *http.Request) {
	p, _ := a.prepare(w, r)
	if p == nil {
		return
	}
	rep := checkReply{Minions: p.Names(), Module: p.Spec.Module, Method: p.Spec.Method, Args: p.Args, Positional: p.Positional}
	if rep.Args == nil {
		rep.Args = map[string]any{}
	}
	for _, n := range p.Notes {
		rep.Notes = append(rep.Notes, n.String())
	}
	writeJSON(w, http.StatusOK, rep)
}

// listJobs is GET /v1/jobs?state=&limit=&before=&target=&call=.
func (a *API) listJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opts := jobs.ListOptions{Limit: DefaultListLimit, Before: q.Get("before"), Target: q.Get("target"), Call: q.Get("call")}
	if opts.Before != "" {
		if _, err := uuid.Parse(opts.Before); err != nil {
			writeError(w, http.StatusBadRequest, status.KindBadArgs, "before: want a job ID (the last job_id of the page before), got %q", opts.Before)
			return
		}
	}
	if s := q.Get("state"); s != "" {
		st, err := status.ParseState(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, status.KindBadArgs, "state: %v", err)
			return
		}
		opts.State = st
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxListLimit {
			writeError(w, http.StatusBadRequest, status.KindBadArgs, "limit: want 1 to %d, got %q", MaxListLimit, s)
			return
		}
		opts.Limit = n
	}
	recs, err := a.o.Store.ListJobs(opts)
	if err != nil {
		a.storeError(w, err)
		return
	}
	lines := make([]jobs.Line, len(recs))
	for i, rec := range recs {
		lines[i] = rec.Line()
	}
	writeJSON(w, http.StatusOK, lines)
}

// getJob is GET /v1/jobs/{id}: the job document, as `job status -o json`.
func (a *API) getJob(w http.ResponseWriter, r *http.Request) {
	rec, entries, err := a.o.Store.Job(r.PathValue("id"))
	if err != nil {
		a.storeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rec.Status(entries))
}

// cancel is POST /v1/jobs/{id}/cancel: as `job cancel`; 202 with the job
// as it stands, its driver ending each minion's part.
func (a *API) cancel(w http.ResponseWriter, r *http.Request) {
	hdr, err := a.o.Store.Header(r.PathValue("id"))
	if err != nil {
		a.storeError(w, err)
		return
	}
	if hdr.State == status.Finished {
		writeError(w, http.StatusConflict, KindConflict, "job %s has finished; there is nothing to cancel", hdr.ID)
		return
	}
	if _, err := a.o.Cancel(r.Context(), hdr.ID); err != nil {
		writeError(w, http.StatusConflict, KindConflict, "%v", err)
		return
	}
	rec, entries, err := a.o.Store.Job(hdr.ID)
	if err != nil {
		a.storeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, rec.Status(entries))
}

// minionView is a minion as GET /v1/minions shows it: its registration
// (as `minion list -o json`, cached facts included) and what the service
// last saw of it.
type minionView struct {
	jobs.Minion
	Reachable *bool       `json:"reachable,omitempty"`
	CheckedAt *time.Time  `json:"checked_at,omitempty"`
	LastError string      `json:"last_error,omitempty"`
	ErrorKind status.Kind `json:"last_error_kind,omitempty"`
	Groups    []string    `json:"groups,omitempty"`
}

func (a *API) views(ms []jobs.Minion, groups map[string][]string) []minionView {
	reach := a.o.Reachability()
	member := map[string][]string{}
	for g, names := range groups {
		for _, n := range names {
			member[n] = append(member[n], g)
		}
	}
	out := make([]minionView, len(ms))
	for i, m := range ms {
		v := minionView{Minion: m, Groups: member[m.Name]}
		if rc, ok := reach[m.Name]; ok {
			v.Reachable, v.CheckedAt, v.LastError, v.ErrorKind = &rc.Reachable, &rc.CheckedAt, rc.LastError, rc.Kind
		}
		slices.Sort(v.Groups)
		out[i] = v
	}
	return out
}

// listMinions is GET /v1/minions?target=&where=: every registered minion,
// or those the target matches (as `minion list TARGET`: cached facts
// only).
func (a *API) listMinions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	inv, err := a.o.Store.Inventory()
	if err != nil {
		a.storeError(w, err)
		return
	}
	ms := inv.Minions
	if t := q.Get("target"); t != "" {
		ms, _, err = a.o.Select(r.Context(), overlord.Selection{Target: t, Where: q["where"]})
		if errors.Is(err, overlord.ErrNoMatch) {
			ms, err = nil, nil
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, status.KindBadArgs, "%v", err)
			return
		}
	} else if len(q["where"]) > 0 {
		writeError(w, http.StatusBadRequest, status.KindBadArgs, "where needs a target ('*' for every minion)")
		return
	}
	writeJSON(w, http.StatusOK, a.views(ms, inv.Groups))
}

// getMinion is GET /v1/minions/{name}.
func (a *API) getMinion(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	inv, err := a.o.Store.Inventory()
	if err != nil {
		a.storeError(w, err)
		return
	}
	for _, m := range inv.Minions {
		if m.Name == name {
			writeJSON(w, http.StatusOK, a.views([]jobs.Minion{m}, inv.Groups)[0])
			return
		}
	}
	writeError(w, http.StatusNotFound, KindNotFound, "no minion is named %s", name)
}

// groups is GET /v1/groups: as `group list -o json`.
func (a *API) groups(w http.ResponseWriter, r *http.Request) {
	inv, err := a.o.Store.Inventory()
	if err != nil {
		a.storeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, inv.Groups)
}

// openapi is GET /v1/openapi.json.
func (a *API) openapi(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(openAPI)
}
