package ui

import (
	"net/http"

	"github.com/overlordhq/overlord/api"
)

// Caller is who the API sees in a dashboard session's requests (jobs
// record it as submitted by "ui:dashboard").
var Caller = api.Caller{Name: "dashboard", Via: "ui"}

// asDashboard returns r with the dashboard as its caller, for the API.
func asDashboard(r *http.Request) *http.Request {
	return r.WithContext(api.WithCaller(r.Context(), Caller))
}
