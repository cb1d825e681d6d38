package ui

import (
	"crypto/rand"
	"crypto/subtle"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bounds of the login.
const (
	// maxSessions bounds the sessions held; at the bound, a new login
	// ends the session closest to its expiry.
	maxSessions = 256
	// loginBurst wrong tokens from one source address are answered; then
	// one more each loginEvery. More get 429 without a comparison.
	loginBurst = 5
	loginEvery = 2 * time.Second
	// maxLimited bounds the source addresses the limiter remembers.
	maxLimited = 4096
	// maxLoginForm bounds the login form's body.
	maxLoginForm = 4 << 10
)

// sessions are the dashboard's logged-in browsers: random IDs and when
// each expires. They live in memory: a restarted service has a new token
// and no sessions.
type sessions struct {
	mu  sync.Mutex
	ttl time.Duration
	max int
	m   map[string]time.Time
}

func newSessions(ttl time.Duration, max int) *sessions {
	return &sessions{ttl: ttl, max: max, m: map[string]time.Time{}}
}

// create starts a session and returns its ID and expiry.
func (s *sessions) create(now time.Time) (string, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, exp := range s.m {
		if !now.Before(exp) {
			delete(s.m, id)
		}
	}
	if len(s.m) >= s.max {
		var oldest string
		for id, exp := range s.m {
			if oldest == "" || exp.Before(s.m[oldest]) {
				oldest = id
			}
		}
		delete(s.m, oldest)
	}
	id, exp := rand.Text(), now.Add(s.ttl)
	s.m[id] = exp
	return id, exp
}

// valid reports whether id is a session that has not expired.
func (s *sessions) valid(id string, now time.Time) bool {
	if id == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.m[id]
	if ok && !now.Before(exp) {
		delete(s.m, id)
		return false
	}
	return ok
}

func (s *sessions) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// sessionID returns the session cookie's value, or "".
func sessionID(r *http.Request) string {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return ""
	}
	return c.Value
}

// limiter is a token bucket per source address, for wrong login tokens.
type limiter struct {
	mu    sync.Mutex
	burst float64
	every time.Duration
	max   int
	m     map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(burst int, every time.Duration, max int) *limiter {
	return &limiter{burst: float64(burst), every: every, max: max, m: map[string]*bucket{}}
}

// refill brings b's tokens up to now.
func (l *limiter) refill(b *bucket, now time.Time) {
	b.tokens = min(l.burst, b.tokens+float64(now.Sub(b.at))/float64(l.every))
	b.at = now
}

// wait returns 0 if key may try a token now, else how long until it may.
func (l *limiter) wait(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.m[key]
	if !ok {
		return 0
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(l.every))
}

// spend counts a wrong token from key.
func (l *limiter) spend(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.m[key]
	if !ok {
		if len(l.m) >= l.max {
			// Forget the sources that are back to a full bucket; if
			// none is, every new source shares one bucket.
			for k, o := range l.m {
				if l.refill(o, now); o.tokens >= l.burst {
					delete(l.m, k)
				}
			}
			if len(l.m) >= l.max {
				key = "overflow"
			}
		}
		if b, ok = l.m[key]; !ok {
			b = &bucket{tokens: l.burst, at: now}
			l.m[key] = b
		}
	}
	l.refill(b, now)
	b.tokens = max(0, b.tokens-1)
}

// source returns the key of a request's source address: the IP, or an
// IPv6 address's /64.
func source(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

// loginPage is what the login template shows.
type loginPage struct {
	Error string
	Next  string
}

// session lets requests with a valid session through to h; others get
// the login page, which comes back here after the login.
func (u *UI) session(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if u.sessions.valid(sessionID(r), u.cfg.Now()) {
			h(w, r)
			return
		}
		next := ""
		if r.Method == http.MethodGet {
			next = r.URL.RequestURI()
		}
		u.render(w, http.StatusUnauthorized, "login.html", loginPage{Next: next})
	}
}

func (u *UI) loginGet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if tok := q.Get("token"); tok != "" {
		u.login(w, r, tok, q.Get("next"))
		return
	}
	if u.sessions.valid(sessionID(r), u.cfg.Now()) {
		http.Redirect(w, r, safeNext(q.Get("next")), http.StatusSeeOther)
		return
	}
	u.render(w, http.StatusOK, "login.html", loginPage{Next: q.Get("next")})
}

func (u *UI) loginPost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginForm)
	if err := r.ParseForm(); err != nil {
		u.render(w, http.StatusBadRequest, "login.html", loginPage{Error: "The login form could not be read: " + err.Error()})
		return
	}
	u.login(w, r, pastedToken(r.PostForm.Get("token")), r.PostForm.Get("next"))
}

// pastedToken takes the token out of what was pasted: the token, or the
// whole login URL.
func pastedToken(s string) string {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "token=") && strings.Contains(s, "/login?") {
		if v, err := url.ParseQuery(s[strings.Index(s, "?")+1:]); err == nil && v.Get("token") != "" {
			return v.Get("token")
		}
	}
	return s
}

// login checks a token and, if it is the UI's, starts a session and
// redirects to next.
func (u *UI) login(w http.ResponseWriter, r *http.Request, token, next string) {
	now, src := u.cfg.Now(), source(r)
	if d := u.limit.wait(src, now); d > 0 {
		secs := int(d.Seconds()) + 1
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		u.logger.Debug("dashboard login refused: too many wrong tokens", "from", r.RemoteAddr)
		u.render(w, http.StatusTooManyRequests, "login.html", loginPage{Next: next,
			Error: "Too many wrong tokens from " + src + ": try again in " + strconv.Itoa(secs) + " s."})
		return
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(u.token)) != 1 {
		u.limit.spend(src, now)
		u.logger.Warn("dashboard login refused: wrong token", "from", r.RemoteAddr)
		u.render(w, http.StatusForbidden, "login.html", loginPage{Next: next,
			Error: "That is not this service's token. 'overlord ui url' prints the login URL; a restarted service has a new one."})
		return
	}
	id, exp := u.sessions.create(now)
	u.mu.Lock()
	secure := u.cfg.Secure || u.secure || r.TLS != nil
	u.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    id,
		Path:     "/",
		Expires:  exp,
		MaxAge:   int(exp.Sub(now).Seconds()),
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteStrictMode,
	})
	u.logger.Info("dashboard login", "from", r.RemoteAddr, "expires", exp)
	http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
}

func (u *UI) logout(w http.ResponseWriter, r *http.Request) {
	u.sessions.remove(sessionID(r))
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// safeNext returns next if it is a path on this site, else "/".
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/"
	}
	if p, err := url.Parse(next); err != nil || p.Host != "" || p.Scheme != "" {
		return "/"
	}
	return next
}
