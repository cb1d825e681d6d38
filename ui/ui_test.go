package ui

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overlordhq/overlord/api"
)

// clock is a settable clock for the sessions' expiry.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeAPI records the requests that reach it.
type fakeAPI struct {
	mu   sync.Mutex
	got  []string
	body []string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	if c, ok := api.CallerFrom(r.Context()); !ok || c != Caller {
		http.Error(w, "no dashboard caller", http.StatusInternalServerError)
		return
	}
	f.mu.Lock()
	f.got = append(f.got, r.Method+" "+r.URL.RequestURI())
	f.body = append(f.body, string(b))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"ok":true}`)
}

func (f *fakeAPI) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

type env struct {
	ui  *UI
	api *fakeAPI
	clk *clock
	srv *httptest.Server
}

func newEnv(t *testing.T, metrics http.Handler) *env {
	t.Helper()
	e := &env{api: &fakeAPI{}, clk: &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
	e.ui = New(Config{API: e.api, Metrics: metrics, Now: e.clk.Now})
	e.srv = httptest.NewServer(e.ui.Handler())
	t.Cleanup(e.srv.Close)
	return e
}

// client returns an HTTP client that keeps cookies and does not follow
// redirects.
func (e *env) client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func do(t *testing.T, c *http.Client, method, url, ctype, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (e *env) login(t *testing.T, c *http.Client) *http.Response {
	t.Helper()
	resp, body := do(t, c, "GET", e.ui.LoginURL(e.srv.URL), "", "")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("login: %s, Location %q\n%s", resp.Status, resp.Header.Get("Location"), body)
	}
	return resp
}

func TestToken(t *testing.T) {
	a, b := New(Config{}), New(Config{})
	if len(a.Token()) < 26 || a.Token() == b.Token() {
		t.Errorf("tokens %q and %q: want two different ones of 26 characters or more (128 bits in base32)", a.Token(), b.Token())
	}
	if got, want := a.LoginURL("http://127.0.0.1:8080/"), "http://127.0.0.1:8080/login?token="+a.Token(); got != want {
		t.Errorf("LoginURL = %q, want %q", got, want)
	}
}

// Without a session: pages get the login page, the API 401 JSON, assets
// and /metrics are served.
func TestNoSession(t *testing.T) {
	e := newEnv(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "overlord_up 1\n") }))
	c := e.client(t)
	for _, path := range []string{"/", "/jobs", "/jobs/0190", "/call", "/minions/web1", "/nowhere"} {
		resp, body := do(t, c, "GET", e.srv.URL+path, "", "")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `action="/login"`) || !strings.Contains(body, `value="`+path+`"`) {
			t.Errorf("GET %s: %s, want 401 and the login form coming back to %s\n%s", path, resp.Status, path, body)
		}
	}
	resp, body := do(t, c, "GET", e.srv.URL+"/v1/jobs", "", "")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"kind":"unauthenticated"`) {
		t.Errorf("GET /v1/jobs: %s %s, want 401 JSON", resp.Status, body)
	}
	resp, body = do(t, c, "POST", e.srv.URL+"/v1/jobs", "application/json", "{}")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST /v1/jobs: %s %s, want 401", resp.Status, body)
	}
	if got := e.api.requests(); len(got) != 0 {
		t.Errorf("the API got %q without a session", got)
	}
	resp, body = do(t, c, "GET", e.srv.URL+"/metrics", "", "")
	if resp.StatusCode != 200 || body != "overlord_up 1\n" {
		t.Errorf("GET /metrics: %s %q", resp.Status, body)
	}
	resp, body = do(t, c, "GET", e.srv.URL+"/static/app.js", "", "")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") || !strings.Contains(body, "EventSource") {
		t.Errorf("GET /static/app.js: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	resp, _ = do(t, c, "GET", e.srv.URL+"/static/nope.js", "", "")
	if resp.StatusCode != 404 {
		t.Errorf("GET /static/nope.js: %s", resp.Status)
	}
}

func TestMetricsNil(t *testing.T) {
	e := newEnv(t, nil)
	resp, _ := do(t, e.client(t), "GET", e.srv.URL+"/metrics", "", "")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics with no Metrics: %s, want 404", resp.Status)
	}
}

func TestLogin(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client(t)
	resp := e.login(t, c)
	var ck *http.Cookie
	for _, x := range resp.Cookies() {
		if x.Name == CookieName {
			ck = x
		}
	}
	if ck == nil {
		t.Fatalf("no %s cookie: %v", CookieName, resp.Header["Set-Cookie"])
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure || ck.Path != "/" || ck.MaxAge != int(DefaultSessionTTL.Seconds()) || len(ck.Value) < 26 {
		t.Errorf("cookie %s: want HttpOnly, SameSite=Strict, not Secure over plain HTTP, Path=/, Max-Age 12h, a long random value", resp.Header["Set-Cookie"])
	}
	for _, path := range []string{"/", "/jobs", "/jobs/x", "/call", "/minions/web1"} {
		resp, body := do(t, c, "GET", e.srv.URL+path, "", "")
		if resp.StatusCode != 200 || !strings.Contains(body, `src="/static/app.js?v=`) {
			t.Errorf("GET %s with a session: %s", path, resp.Status)
		}
	}
	resp, _ = do(t, c, "GET", e.srv.URL+"/nowhere", "", "")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nowhere: %s", resp.Status)
	}
	resp, body := do(t, c, "GET", e.srv.URL+"/v1/jobs?state=RUNNING", "", "")
	if resp.StatusCode != 200 || body != `{"ok":true}` {
		t.Errorf("GET /v1/jobs with a session: %s %s", resp.Status, body)
	}
	resp, body = do(t, c, "GET", e.srv.URL+"/ui/modules.json", "", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"name":"command"`) {
		t.Errorf("GET /ui/modules.json: %s %.200s", resp.Status, body)
	}
	// The login page with a session goes on to next; next stays on the site.
	resp, _ = do(t, c, "GET", e.srv.URL+"/login?next=/jobs", "", "")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/jobs" {
		t.Errorf("GET /login?next=/jobs with a session: %s %q", resp.Status, resp.Header.Get("Location"))
	}
	// The session ends after 12 hours.
	e.clk.add(DefaultSessionTTL)
	resp, _ = do(t, c, "GET", e.srv.URL+"/v1/jobs", "", "")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after 12 h: %s, want 401", resp.Status)
	}
}

func TestLoginForm(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client(t)
	origin := e.srv.URL
	// The whole URL pasted works too; next brings back where one was.
	for _, tok := range []string{e.ui.Token(), " " + e.ui.LoginURL(e.srv.URL) + "\n"} {
		form := url.Values{"token": {tok}, "next": {"/jobs?state=RUNNING"}}.Encode()
		resp, body := do(t, c, "POST", e.srv.URL+"/login", "application/x-www-form-urlencoded", form, "Origin", origin)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/jobs?state=RUNNING" {
			t.Errorf("POST /login %q: %s %q\n%s", tok, resp.Status, resp.Header.Get("Location"), body)
		}
	}
	// From another site: refused.
	form := url.Values{"token": {e.ui.Token()}}.Encode()
	resp, _ := do(t, e.client(t), "POST", e.srv.URL+"/login", "application/x-www-form-urlencoded", form, "Sec-Fetch-Site", "cross-site")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST /login: %s, want 403", resp.Status)
	}
	// Log out: the session is gone.
	resp, _ = do(t, c, "POST", e.srv.URL+"/logout", "application/x-www-form-urlencoded", "", "Origin", origin)
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("POST /logout: %s", resp.Status)
	}
	resp, _ = do(t, c, "GET", e.srv.URL+"/v1/jobs", "", "")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after logout: %s, want 401", resp.Status)
	}
}

// Wrong tokens: 403, then 429 once a source has used up its tries, and
// then the right token too is turned away until the wait is over.
func TestLoginLimit(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client(t)
	for i := range loginBurst {
		resp, body := do(t, c, "GET", e.srv.URL+"/login?token=WRONG", "", "")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "not this service") {
			t.Fatalf("wrong token %d: %s", i, resp.Status)
		}
	}
	resp, body := do(t, c, "GET", e.ui.LoginURL(e.srv.URL), "", "")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "Too many wrong tokens") {
		t.Errorf("after %d wrong tokens: %s, Retry-After %q", loginBurst, resp.Status, resp.Header.Get("Retry-After"))
	}
	e.clk.add(loginEvery)
	e.login(t, c)
}

// A POST to the API needs JSON from the dashboard's own origin.
func TestAPIPost(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client(t)
	e.login(t, c)
	for _, tc := range []struct {
		name  string
		ctype string
		hdr   []string
		code  int
	}{
		{"json", "application/json", nil, 200},
		{"json, same origin", "application/json; charset=utf-8", []string{"Origin", e.srv.URL}, 200},
		{"form", "application/x-www-form-urlencoded", nil, 403},
		{"text", "text/plain", nil, 403},
		{"no type", "", nil, 403},
		{"other origin", "application/json", []string{"Origin", "http://evil.example"}, 403},
		{"cross-site", "application/json", []string{"Sec-Fetch-Site", "cross-site"}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.api.requests())
			resp, body := do(t, c, "POST", e.srv.URL+"/v1/jobs", tc.ctype, `{"target":"*"}`, tc.hdr...)
			if resp.StatusCode != tc.code {
				t.Errorf("%s %s, want %d", resp.Status, body, tc.code)
			}
			if reached := len(e.api.requests()) > before; reached != (tc.code == 200) {
				t.Errorf("reached the API: %v", reached)
			}
		})
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "/",
		"/jobs?state=RUNNING":   "/jobs?state=RUNNING",
		"//evil.example/":       "/",
		"/\\evil.example":       "/",
		"http://evil.example/":  "/",
		"jobs":                  "/",
		"/ok\r\nSet-Cookie: x":  "/",
		"/minions/web1#details": "/minions/web1#details",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckAddr(t *testing.T) {
	for _, tc := range []struct {
		addr string
		tls  bool
		ok   bool
	}{
		{"127.0.0.1:8080", false, true},
		{"[::1]:8080", false, true},
		{"localhost:0", false, true},
		{":8080", false, false},
		{"0.0.0.0:8080", false, false},
		{"10.1.2.3:8080", false, false},
		{"example.com:8080", false, false},
		{":8080", true, true},
		{"10.1.2.3:8080", true, true},
		{"127.0.0.1", false, false},
		{"127.0.0.1:http", false, false},
	} {
		err := CheckAddr(tc.addr, tc.tls)
		if (err == nil) != tc.ok {
			t.Errorf("CheckAddr(%q, tls %v) = %v", tc.addr, tc.tls, err)
		}
	}
	if err := CheckAddr("0.0.0.0:1", false); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("not ErrNotLoopback: %v", err)
	}
}

// Open serves on loopback, says where, and Close stops it; plain HTTP
// elsewhere is refused.
func TestOpen(t *testing.T) {
	u := New(Config{API: &fakeAPI{}})
	if err := u.Open(t.Context(), ServeConfig{Addr: "0.0.0.0:0"}); !errors.Is(err, ErrNotLoopback) {
		t.Fatalf("Open on 0.0.0.0 without TLS: %v", err)
	}
	if err := u.Open(t.Context(), ServeConfig{Addr: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u.URL(), "http://127.0.0.1:") || strings.HasSuffix(u.URL(), ":0") {
		t.Errorf("URL %q", u.URL())
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Get(u.LoginURL(u.URL()))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/" || !strings.Contains(string(body), `data-page="fleet"`) {
		t.Errorf("the login URL led to %s %s", resp.Request.URL, resp.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := u.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := u.Close(ctx); err != nil {
		t.Errorf("Close again: %v", err)
	}
	select {
	case <-u.Done():
	default:
		t.Error("Done not closed after Close")
	}
}

func TestBaseURL(t *testing.T) {
	host, _ := os.Hostname()
	for _, tc := range []struct {
		cfg  ServeConfig
		addr string
		want string
	}{
		{ServeConfig{Addr: "127.0.0.1:0"}, "127.0.0.1:4242", "http://127.0.0.1:4242"},
		{ServeConfig{Addr: "[::1]:8080"}, "[::1]:8080", "http://[::1]:8080"},
		{ServeConfig{Addr: "localhost:8080"}, "127.0.0.1:8080", "http://localhost:8080"},
		{ServeConfig{Addr: ":8443", TLS: &tls.Config{}}, "[::]:8443", "https://" + net.JoinHostPort(host, "8443")},
		{ServeConfig{Addr: "0.0.0.0:8443", TLS: &tls.Config{}, Name: "ovl.example"}, "0.0.0.0:8443", "https://ovl.example:8443"},
		{ServeConfig{Addr: "10.0.0.5:8443", TLS: &tls.Config{}, Name: "ovl.example"}, "10.0.0.5:8443", "https://ovl.example:8443"},
	} {
		addr, err := net.ResolveTCPAddr("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := baseURL(tc.cfg, addr); got != tc.want {
			t.Errorf("baseURL(%+v, %s) = %q, want %q", tc.cfg, tc.addr, got, tc.want)
		}
	}
}
