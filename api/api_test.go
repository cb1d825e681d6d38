package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes: the OpenAPI document names every route the
// API serves, and serves every route it names, with the same methods.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q, want 3.x", doc.OpenAPI)
	}
	var documented, served []string
	for path, ops := range doc.Paths {
		for m := range ops {
			documented = append(documented, strings.ToUpper(m)+" "+path)
		}
	}
	for _, r := range routes {
		served = append(served, r.method+" "+r.path)
	}
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Errorf("the document and the routes differ:\ndocumented %v\nserved     %v", documented, served)
	}
	// Every operation documents its errors as the Error schema, and
	// every reference resolves.
	var full struct {
		Components struct{ Schemas map[string]json.RawMessage } `json:"components"`
	}
	if err := json.Unmarshal(openAPI, &full); err != nil {
		t.Fatal(err)
	}
	for _, ref := range strings.Split(string(openAPI), `"$ref": "#/components/schemas/`)[1:] {
		name := ref[:strings.IndexByte(ref, '"')]
		if _, ok := full.Components.Schemas[name]; !ok {
			t.Errorf("$ref to schema %s, which the document does not have", name)
		}
	}
}

// TestNoCaller: without a caller in its context (a listener that did not
// authenticate), and without a client certificate, every route is 401
// with a JSON error.
func TestNoCaller(t *testing.T) {
	a := New(Config{})
	for _, h := range []http.Handler{a.Handler(), a.RequireCertificate(a.Handler())} {
		for _, r := range routes {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(r.method, strings.ReplaceAll(strings.ReplaceAll(r.path, "{id}", "x"), "{name}", "x"), nil))
			var doc errorDoc
			if w.Code != http.StatusUnauthorized || json.Unmarshal(w.Body.Bytes(), &doc) != nil || doc.Error.Kind != KindUnauthenticated {
				t.Errorf("%s %s: %d %s", r.method, r.path, w.Code, w.Body)
			}
		}
	}
}
