// Package ui is overlord's web dashboard: a few pages of HTML, CSS and
// plain JavaScript embedded in the binary, served by `overlord serve --ui`
// beside the HTTP API they read (package api), behind a login.
//
// # Login
//
// New makes a random token (crypto/rand, 130 bits) that lives as long as
// the process. GET /login?token=TOKEN (the login URL, LoginURL), or the
// login form's POST /login, compares it in constant time and, when it
// matches, sets a session cookie (a random ID, HttpOnly, SameSite=Strict,
// Secure over TLS, valid for 12 hours) and redirects to the dashboard.
// Wrong tokens are limited per source address. A page requested without a
// valid session gets the login page (401); an API call under /v1/ gets a
// 401 JSON error.
//
// # Requests that change something
//
// Every POST must pass net/http's CrossOriginProtection (Sec-Fetch-Site,
// Origin); a POST under /v1/ must also carry Content-Type
// application/json and, if it has an Origin header, the dashboard's own
// origin. A cross-site form can do neither.
//
// # Serving
//
// Open listens and serves the Handler (gate.Serve): plain HTTP only on a
// loopback address, HTTPS (a tls.Config the caller makes) anywhere. GET
// /metrics needs no session: it is read-only and served by
// Config.Metrics (404 when nil).
package ui
