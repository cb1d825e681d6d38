package ui

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/json"
	"html/template"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/overlordhq/overlord/internal/buildinfo"
	"github.com/overlordhq/overlord/modules/builtin"
)

// DefaultSessionTTL is how long a session cookie is valid.
const DefaultSessionTTL = 12 * time.Hour

// CookieName is the session cookie's name.
const CookieName = "overlord_session"

//go:embed assets
var assets embed.FS

// Config configures a UI.
type Config struct {
	// API serves /v1/ (api.API's Handler). The UI calls it with the
	// dashboard's caller in the request's context, once the session is
	// checked. Nil: /v1/ answers 503.
	API http.Handler
	// Metrics serves GET /metrics, without a session. Nil: 404.
	Metrics http.Handler
	// Logger logs logins and refusals (default: discard).
	Logger *slog.Logger
	// Secure marks the session cookie Secure. Open sets it when it
	// serves over TLS; set it when a TLS proxy serves the Handler.
	Secure bool
	// SessionTTL is how long a session lasts (DefaultSessionTTL if 0).
	SessionTTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// UI is the dashboard: its login token, its sessions, its pages. New,
// then Handler (or Open to serve it), then Close.
type UI struct {
	cfg      Config
	logger   *slog.Logger
	token    string
	sessions *sessions
	limit    *limiter
	pages    *template.Template
	static   fs.FS
	modules  []byte // the built-in modules' descriptions, as JSON

	mu     sync.Mutex
	srv    *server // set by Open
	secure bool    // set by Open over TLS
}

// New makes a UI with a new login token.
func New(cfg Config) *UI {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	static, err := fs.Sub(assets, "assets/static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	mods, err := json.Marshal(builtin.Registry().DescribeAll())
	if err != nil {
		panic(err) // descriptions are plain data
	}
	return &UI{
		cfg:      cfg,
		logger:   cfg.Logger.With("component", "ui"),
		token:    rand.Text(),
		sessions: newSessions(cfg.SessionTTL, maxSessions),
		limit:    newLimiter(loginBurst, loginEvery, maxLimited),
		pages:    template.Must(template.New("").Funcs(template.FuncMap{"asset": assetURL}).ParseFS(assets, "assets/*.html")),
		static:   static,
		modules:  mods,
	}
}

// Token returns the login token.
func (u *UI) Token() string { return u.token }

// LoginURL returns the URL that logs in, for a dashboard served at base
// ("http://127.0.0.1:8080").
func (u *UI) LoginURL(base string) string {
	return strings.TrimRight(base, "/") + "/login?token=" + url.QueryEscape(u.token)
}

// Handler returns the dashboard's HTTP handler: its pages, its assets,
// the login, /metrics, and the API under /v1/ for its sessions.
func (u *UI) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", u.loginGet)
	mux.HandleFunc("POST /login", u.loginPost)
	mux.HandleFunc("POST /logout", u.logout)
	mux.HandleFunc("GET /metrics", u.metrics)
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.HandlerFunc(u.asset)))
	mux.Handle("/v1/", u.apiHandler())
	mux.HandleFunc("GET /ui/modules.json", u.session(u.modulesJSON))
	for path, p := range pageRoutes {
		mux.HandleFunc("GET "+path, u.session(u.page(p)))
	}
	mux.HandleFunc("/", u.session(u.notFound))
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "forbidden", "cross-origin request refused")
	}))
	return headers(cop.Handler(mux))
}

// pageInfo is one page of the dashboard: the shell the browser gets, the
// script fills it in from the API.
type pageInfo struct {
	Name  string // body's data-page, and the nav entry marked current
	Title string
}

var pageRoutes = map[string]pageInfo{
	"/{$}":            {"fleet", "Fleet"},
	"/minions/{name}": {"minion", "Minion"},
	"/jobs":           {"jobs", "Jobs"},
	"/jobs/{id}":      {"job", "Job"},
	"/call":           {"call", "New call"},
}

// headers sets what every answer carries: no caching, no framing, no
// script but the dashboard's own, no referrer (the login URL's token).
func headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// page renders a page's shell.
func (u *UI) page(p pageInfo) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		u.render(w, http.StatusOK, "page.html", p)
	}
}

func (u *UI) notFound(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, http.StatusMethodNotAllowed, "bad_args", r.Method+" "+r.URL.Path+" is not allowed")
		return
	}
	u.render(w, http.StatusNotFound, "page.html", pageInfo{Name: "notfound", Title: "Not found"})
}

// render executes a template into a buffer first, so that a failure is a
// clean 500.
func (u *UI) render(w http.ResponseWriter, code int, name string, data any) {
	var buf bytes.Buffer
	if err := u.pages.ExecuteTemplate(&buf, name, data); err != nil {
		u.logger.Error("rendering a page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// assetURL returns an asset's URL with the binary's version in it, so
// that a browser does not keep an old one after an upgrade.
func assetURL(name string) string {
	return "/static/" + name + "?v=" + url.QueryEscape(buildinfo.Version())
}

// asset serves an embedded file; assets may be cached for a while (the
// binary changes them only on upgrade, and the pages name them with the
// binary's version: assetURL).
func (u *UI) asset(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Path
	data, err := fs.ReadFile(u.static, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "private, max-age=300")
	_, _ = w.Write(data)
}

func (u *UI) modulesJSON(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(u.modules)
}

func (u *UI) metrics(w http.ResponseWriter, r *http.Request) {
	if u.cfg.Metrics == nil {
		http.Error(w, "no metrics in this build of overlord serve", http.StatusNotFound)
		return
	}
	u.cfg.Metrics.ServeHTTP(w, r)
}

// apiHandler passes /v1/ to the API for a request with a session, as the
// dashboard's caller; POSTs must be JSON from the dashboard's own origin.
func (u *UI) apiHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !u.sessions.valid(sessionID(r), u.cfg.Now()) {
			writeError(w, http.StatusUnauthorized, "unauthenticated", "no dashboard session: log in with the URL 'overlord ui url' prints")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if msg := u.checkPost(r); msg != "" {
				writeError(w, http.StatusForbidden, "forbidden", msg)
				return
			}
		}
		if u.cfg.API == nil {
			writeError(w, http.StatusServiceUnavailable, "internal", "this dashboard has no API behind it")
			return
		}
		u.cfg.API.ServeHTTP(w, asDashboard(r))
	})
}

// checkPost returns why a state-changing API request is refused, or "".
func (u *UI) checkPost(r *http.Request) string {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/json" {
		return "Content-Type must be application/json"
	}
	if o := r.Header.Get("Origin"); o != "" && o != origin(r) {
		return "Origin " + o + " is not the dashboard's (" + origin(r) + ")"
	}
	return ""
}

// origin returns the request's own origin: scheme://host.
func origin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// apiError is the API's error document.
type apiError struct {
	Error struct {
		Kind    string `json:"kind"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, code int, kind, msg string) {
	var e apiError
	e.Error.Kind, e.Error.Message = kind, msg
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(e)
}
