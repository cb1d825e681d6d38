//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// apiClient is an HTTP client of the service's API, as one identity (or
// none).
type apiClient struct {
	t    *testing.T
	base string
	hc   *http.Client
}

// newAPIClient returns a client of the API at addr presenting the
// certificate and key in bundle (a PEM file; "" for none). It checks the
// service's certificate against the CA in stateDir, without a host name:
// the endpoint's certificate names the host the service runs on.
func newAPIClient(t *testing.T, stateDir, addr, bundle string) *apiClient {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(stateDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate in ca.crt")
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // checked below, against the CA
		VerifyConnection: func(cs tls.ConnectionState) error {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			return err
		},
	}
	if bundle != "" {
		pemBytes, err := os.ReadFile(bundle)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(pemBytes, pemBytes)
		if err != nil {
			t.Fatalf("%s: %v", bundle, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &apiClient{t: t, base: "https://" + addr, hc: &http.Client{
		Timeout:   2 * time.Minute,
		Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true},
	}}
}

// do makes a request and returns its status and body.
func (c *apiClient) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		default:
			j, err := json.Marshal(b)
			if err != nil {
				c.t.Fatal(err)
			}
			rd = bytes.NewReader(j)
		}
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// want makes a request, checks its status, and decodes the body into v
// (if not nil).
func (c *apiClient) want(code int, method, path string, body, v any) []byte {
	c.t.Helper()
	got, b := c.do(method, path, body)
	if got != code {
		c.t.Fatalf("%s %s: status %d, want %d:\n%s", method, path, got, code, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			c.t.Fatalf("%s %s: %v:\n%s", method, path, err, b)
		}
	}
	return b
}

// wantError makes a request that must fail with code and an error
// document of kind.
func (c *apiClient) wantError(code int, kind, method, path string, body any) string {
	c.t.Helper()
	var doc struct {
		Error struct{ Kind, Message string } `json:"error"`
	}
	c.want(code, method, path, body, &doc)
	if doc.Error.Kind != kind || doc.Error.Message == "" {
		c.t.Fatalf("%s %s: error %+v, want kind %s with a message", method, path, doc.Error, kind)
	}
	return doc.Error.Message
}

type apiJob struct {
	JobID       string `json:"job_id"`
	State       string `json:"state"`
	SubmittedBy string `json:"submitted_by"`
	Minions     map[string]struct {
		State  string          `json:"state"`
		OK     bool            `json:"ok"`
		Result json.RawMessage `json:"result"`
		Error  *struct{ Kind string }
	} `json:"minions"`
	Summary struct{ Total, OK, Failed, Pending int } `json:"summary"`
}

// TestAPI: every route of the HTTP API on 'overlord serve', with real
// minions and real certificates: refused without a certificate (401), with
// a minion's or a revoked one (403); calls sync and async, a job's event
// stream while it runs, cancel, lists, minions, groups; each answer checks
// against the OpenAPI document the service serves, and every route the
// document names answers.
func TestAPI(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "web1", "web2")
	if _, err := f.overlord("group", "add", "web", "web1", "web2"); err != nil {
		t.Fatal(err)
	}
	bot := filepath.Join(f.dir, "api-bot.pem")
	if out, err := f.overlord("ca", "client", "api-bot", "--bundle-out", bot); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	p, addr := startServe(t, f)
	waitService(t, f, p)

	c := newAPIClient(t, f.stateDir, addr, bot)
	doc := c.openAPI()

	// Without a certificate, and with a minion's.
	anon := newAPIClient(t, f.stateDir, addr, "")
	for _, path := range []string{"/v1/jobs", "/v1/minions", "/v1/openapi.json", "/metrics"} {
		anon.wantError(http.StatusUnauthorized, "unauthenticated", "GET", path, nil)
	}
	anon.wantError(http.StatusUnauthorized, "unauthenticated", "POST", "/v1/jobs", `{}`)
	minionCert := newAPIClient(t, f.stateDir, addr, f.minions["web1"].bundle)
	if msg := minionCert.wantError(http.StatusForbidden, "denied", "GET", "/v1/jobs", nil); !strings.Contains(msg, "role") {
		t.Errorf("a minion's certificate: %q does not say why", msg)
	}

	// A synchronous call: the job document, as call -o json.
	var job apiJob
	body := c.want(http.StatusOK, "POST", "/v1/jobs", map[string]any{
		"target": "@web", "module": "command", "method": "run", "args": map[string]any{"cmd": "echo hello-$((6*7))"},
	}, &job)
	doc.check(t, "POST", "/v1/jobs", 200, body)
	if job.State != "FINISHED" || job.Summary.OK != 2 || job.SubmittedBy != "api:api-bot" {
		t.Fatalf("sync call: %s", body)
	}
	if r := job.Minions["web1"]; !r.OK || !strings.Contains(string(r.Result), "hello-42") {
		t.Errorf("web1's result: %s", body)
	}
	// The CLI reads the same job, with who submitted it.
	out, err := f.overlord("job", "status", job.JobID, "-o", "json")
	if err != nil || !strings.Contains(out, `"submitted_by": "api:api-bot"`) {
		t.Errorf("job status of the API's job: %v\n%s", err, out)
	}

	// Bad requests change nothing.
	before := c.jobCount()
	c.wantError(http.StatusBadRequest, "bad_args", "POST", "/v1/jobs", `{"target": "*", "module": "test", "method": "ping", "colour": "red"}`)
	c.wantError(http.StatusBadRequest, "bad_args", "POST", "/v1/jobs", `{"target": "*"`)
	c.wantError(http.StatusBadRequest, "bad_args", "POST", "/v1/jobs", map[string]any{"target": "*", "module": "command", "method": "run", "args": map[string]any{"cmd": "true", "runas": "root"}})
	c.wantError(http.StatusBadRequest, "bad_args", "POST", "/v1/jobs", map[string]any{"target": "*", "module": "test", "method": "ping", "timeout": "soon"})
	c.wantError(http.StatusUnprocessableEntity, "no_match", "POST", "/v1/jobs", map[string]any{"target": "db*", "module": "test", "method": "ping"})
	if code, b := c.do("POST", "/v1/jobs", strings.Repeat(" ", 9<<20)); code != http.StatusRequestEntityTooLarge && code != http.StatusBadRequest {
		t.Errorf("a 9 MiB request: %d %s", code, b)
	}
	if after := c.jobCount(); after != before {
		t.Errorf("bad requests made jobs: %d before, %d after", before, after)
	}

	// Check: the matches and the arguments as bound, nothing run.
	var chk struct {
		Minions []string       `json:"minions"`
		Args    map[string]any `json:"args"`
	}
	body = c.want(http.StatusOK, "POST", "/v1/jobs/check", map[string]any{"target": "web*,!web2", "module": "command", "method": "run", "args": map[string]any{"cmd": "uptime"}}, &chk)
	doc.check(t, "POST", "/v1/jobs/check", 200, body)
	if !slices.Equal(chk.Minions, []string{"web1"}) || chk.Args["cmd"] != "uptime" {
		t.Errorf("check: %s", body)
	}
	if c.jobCount() != before {
		t.Error("check made a job")
	}

	// An async job and its event stream: output as it grows, then the end.
	body = c.want(http.StatusCreated, "POST", "/v1/jobs", map[string]any{
		"target": "web1", "module": "command", "method": "run", "async": true,
		"args": map[string]any{"cmd": "for i in 1 2 3; do echo tick-$i; sleep 0.4; done"},
	}, &job)
	doc.check(t, "POST", "/v1/jobs", 201, body)
	if job.JobID == "" || job.State != "RUNNING" {
		t.Fatalf("async: %s", body)
	}
	events := c.events(job.JobID)
	names := make([]string, len(events))
	var output strings.Builder
	for i, e := range events {
		names[i] = e.name
		if e.name == "output" {
			var o struct{ Minion, Data string }
			if err := json.Unmarshal(e.data, &o); err != nil || o.Minion != "web1" {
				t.Errorf("output event %s: %v", e.data, err)
			}
			output.WriteString(o.Data)
		}
	}
	if names[0] != "job" || names[len(names)-1] != "end" || !slices.Contains(names, "result") || !slices.Contains(names, "output") {
		t.Errorf("events: %v, want job, output and result events, then end", names)
	}
	if got := output.String(); got != "tick-1\ntick-2\ntick-3\n" {
		t.Errorf("output events: %q", got)
	}
	var end apiJob
	if err := json.Unmarshal(events[len(events)-1].data, &end); err != nil || end.State != "FINISHED" || end.Summary.OK != 1 {
		t.Errorf("end event: %v %s", err, events[len(events)-1].data)
	}
	// A finished job's stream: the job, then the end.
	if ev := c.events(job.JobID); len(ev) != 2 || ev[0].name != "job" || ev[1].name != "end" {
		t.Errorf("a finished job's events: %v", ev)
	}

	// Cancel a running job.
	c.want(http.StatusCreated, "POST", "/v1/jobs", map[string]any{
		"target": "@web", "module": "command", "method": "run", "async": true, "args": map[string]any{"cmd": "sleep 60"},
	}, &job)
	long := job.JobID
	c.waitJob(long, func(j apiJob) bool {
		return j.Minions["web1"].State == "RUNNING" && j.Minions["web2"].State == "RUNNING"
	}) // submitted
	body = c.want(http.StatusAccepted, "POST", "/v1/jobs/"+long+"/cancel", nil, nil)
	doc.check(t, "POST", "/v1/jobs/{id}/cancel", 202, body)
	j := c.waitJob(long, func(j apiJob) bool { return j.State == "FINISHED" })
	for n, r := range j.Minions {
		if r.Error == nil || r.Error.Kind != "cancelled" {
			t.Errorf("cancelled job: %s ended %+v", n, r)
		}
	}
	c.wantError(http.StatusConflict, "conflict", "POST", "/v1/jobs/"+long+"/cancel", nil)

	// Unknown jobs and minions.
	c.wantError(http.StatusNotFound, "not_found", "GET", "/v1/jobs/ffffffff", nil)
	c.wantError(http.StatusNotFound, "not_found", "POST", "/v1/jobs/ffffffff/cancel", nil)
	c.wantError(http.StatusNotFound, "not_found", "GET", "/v1/jobs/ffffffff/events", nil)
	c.wantError(http.StatusNotFound, "not_found", "GET", "/v1/minions/db9", nil)
	c.wantError(http.StatusNotFound, "not_found", "GET", "/v1/nothing", nil)

	// Lists.
	var lines []apiJob
	body = c.want(http.StatusOK, "GET", "/v1/jobs?limit=2", nil, &lines)
	doc.check(t, "GET", "/v1/jobs", 200, body)
	if len(lines) != 2 || lines[0].JobID != long {
		t.Errorf("GET /v1/jobs?limit=2: %s", body)
	}
	var older []apiJob
	c.want(http.StatusOK, "GET", "/v1/jobs?before="+lines[1].JobID, nil, &older)
	if len(older) != 1 {
		t.Errorf("GET /v1/jobs?before=: %d jobs, want the first one", len(older))
	}
	c.want(http.StatusOK, "GET", "/v1/jobs?state=RUNNING", nil, &lines)
	if len(lines) != 0 {
		t.Errorf("RUNNING jobs: %v", lines)
	}
	c.wantError(http.StatusBadRequest, "bad_args", "GET", "/v1/jobs?state=DONE", nil)
	c.wantError(http.StatusBadRequest, "bad_args", "GET", "/v1/jobs?limit=0", nil)
	c.wantError(http.StatusBadRequest, "bad_args", "GET", "/v1/jobs?before=zzz", nil)

	var minions []struct {
		Name      string   `json:"name"`
		Reachable *bool    `json:"reachable"`
		Groups    []string `json:"groups"`
	}
	body = c.want(http.StatusOK, "GET", "/v1/minions", nil, &minions)
	doc.check(t, "GET", "/v1/minions", 200, body)
	if len(minions) != 2 || minions[0].Reachable == nil || !*minions[0].Reachable || !slices.Equal(minions[0].Groups, []string{"web"}) {
		t.Errorf("GET /v1/minions: %s", body)
	}
	c.want(http.StatusOK, "GET", "/v1/minions?target=web2", nil, &minions)
	if len(minions) != 1 || minions[0].Name != "web2" {
		t.Errorf("GET /v1/minions?target=web2: %+v", minions)
	}
	body = c.want(http.StatusOK, "GET", "/v1/minions/web1", nil, nil)
	doc.check(t, "GET", "/v1/minions/{name}", 200, body)
	var groups map[string][]string
	body = c.want(http.StatusOK, "GET", "/v1/groups", nil, &groups)
	doc.check(t, "GET", "/v1/groups", 200, body)
	if !slices.Equal(groups["web"], []string{"web1", "web2"}) {
		t.Errorf("GET /v1/groups: %s", body)
	}
	body = c.want(http.StatusOK, "GET", "/v1/jobs/"+job.JobID[:12], nil, nil)
	doc.check(t, "GET", "/v1/jobs/{id}", 200, body)

	// The inventory: none yet, then two snapshots and what changed.
	c.wantError(http.StatusNotFound, "not_found", "GET", "/v1/inventory", nil)
	var ver struct {
		Version int `json:"version"`
		Minions int `json:"minions"`
	}
	body = c.want(http.StatusCreated, "POST", "/v1/inventory", nil, &ver)
	doc.check(t, "POST", "/v1/inventory", 201, body)
	if ver.Version != 1 || ver.Minions != 2 {
		t.Errorf("POST /v1/inventory: %s", body)
	}
	c.want(http.StatusCreated, "POST", "/v1/inventory", map[string]any{"target": "web1"}, &ver)
	c.wantError(http.StatusUnprocessableEntity, "no_match", "POST", "/v1/inventory", map[string]any{"target": "db*"})
	c.wantError(http.StatusBadRequest, "bad_args", "POST", "/v1/inventory", map[string]any{"targets": "*"})
	body = c.want(http.StatusOK, "GET", "/v1/inventory", nil, nil)
	doc.check(t, "GET", "/v1/inventory", 200, body)
	body = c.want(http.StatusOK, "GET", "/v1/inventory/versions", nil, nil)
	doc.check(t, "GET", "/v1/inventory/versions", 200, body)
	var diff struct{ Old, New int }
	body = c.want(http.StatusOK, "GET", "/v1/inventory/diff", nil, &diff)
	doc.check(t, "GET", "/v1/inventory/diff", 200, body)
	if diff.Old != 1 || diff.New != 2 {
		t.Errorf("GET /v1/inventory/diff: %s", body)
	}
	var first struct {
		Version int            `json:"version"`
		Minions map[string]any `json:"minions"`
	}
	c.want(http.StatusOK, "GET", "/v1/inventory?at=1", nil, &first)
	if first.Version != 1 || len(first.Minions) != 2 {
		t.Errorf("GET /v1/inventory?at=1: version %d, %d minions", first.Version, len(first.Minions))
	}
	c.wantError(http.StatusBadRequest, "bad_args", "GET", "/v1/inventory?at=soon", nil)
	c.wantError(http.StatusNotFound, "not_found", "GET", "/v1/inventory?at=9", nil)

	// Every route the document names is served (none answers "no such
	// route").
	for path, ops := range doc.Paths {
		for method := range ops {
			concrete := strings.NewReplacer("{id}", job.JobID, "{name}", "web1").Replace(path)
			if strings.HasSuffix(path, "/events") || strings.HasSuffix(path, "/cancel") {
				continue // answered above
			}
			m := strings.ToUpper(method)
			var b any
			if m == "POST" {
				b = `{"target": "web1", "module": "test", "method": "ping"}`
				if path == "/v1/inventory" {
					b = `{"target": "web1"}`
				}
			}
			code, resp := c.do(m, concrete, b)
			if code >= 300 {
				t.Errorf("%s %s (documented): %d %s", m, concrete, code, resp)
			}
		}
	}

	// overlord transmit, the API's request on standard input: the same
	// document and exit codes as call -o json, through the service or not.
	transmit := func(req string, args ...string) (int, string, string) {
		cmd, stdout, stderr := overlordCmd(f, append([]string{"transmit"}, args...)...)
		cmd.Stdin = strings.NewReader(req)
		return exitCode(t, cmd), stdout.String(), stderr.String()
	}
	for _, how := range [][]string{{"-v"}, {"--direct", "-v"}} {
		code, stdout, stderr := transmit(`{"target": "@web", "module": "command", "method": "run", "args": {"cmd": "echo hi-$(hostname >/dev/null; echo x)"}}`, how...)
		var tj apiJob
		if err := json.Unmarshal([]byte(stdout), &tj); err != nil || code != 0 || tj.Summary.OK != 2 || !strings.Contains(string(tj.Minions["web2"].Result), "hi-x") {
			t.Errorf("transmit %v: exit %d, %v\n%s\n%s", how, code, err, stdout, stderr)
		}
		if via := strings.Contains(stderr, "via the service"); via == slices.Contains(how, "--direct") {
			t.Errorf("transmit %v: %s", how, stderr)
		}
	}
	if code, stdout, _ := transmit(`{"target": "web1", "module": "test", "method": "ping", "async": true}`); code != 0 || !strings.Contains(stdout, `"job_id"`) {
		t.Errorf("transmit async: exit %d\n%s", code, stdout)
	}
	for req, wantCode := range map[string]int{
		`{"target": "web1", "module": "test"`:                            2,
		`{"target": "web1", "module": "test", "method": "ping", "x": 1}`: 2,
		`{"target": "db*", "module": "test", "method": "ping"}`:          3,
	} {
		code, stdout, _ := transmit(req)
		var e struct {
			Error struct{ Kind, Message string }
		}
		if code != wantCode || json.Unmarshal([]byte(stdout), &e) != nil || e.Error.Kind != "bad_args" || e.Error.Message == "" {
			t.Errorf("transmit %s: exit %d (want %d)\n%s", req, code, wantCode, stdout)
		}
	}

	// The service's metrics, for certificate holders: the API's calls are
	// counted with the rest.
	code, scrape := c.do("GET", "/metrics", nil)
	if code != http.StatusOK || !bytes.Contains(scrape, []byte(`overlord_results_total{kind="ok",method="run",module="command"}`)) {
		t.Errorf("GET /metrics: %d\n%s", code, logTail(scrape, 30))
	}

	// A revoked identity is refused at once.
	if out, err := f.overlord("ca", "revoke", "api-bot", "--role", "overlord"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	c.wantError(http.StatusForbidden, "denied", "GET", "/v1/jobs", nil)

	// Every call is logged with its caller.
	logged, err := os.ReadFile(filepath.Join(f.dir, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(logged, []byte("caller=api:api-bot method=POST path=/v1/jobs status=200")) {
		t.Errorf("serve.log has no line for the API's calls with their caller:\n%s", logTail(logged, 20))
	}
}

func logTail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// jobCount returns how many jobs the API lists.
func (c *apiClient) jobCount() int {
	c.t.Helper()
	var lines []json.RawMessage
	c.want(http.StatusOK, "GET", "/v1/jobs?limit=1000", nil, &lines)
	return len(lines)
}

// waitJob polls a job until ok says it is as wanted.
func (c *apiClient) waitJob(id string, ok func(apiJob) bool) apiJob {
	c.t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		var j apiJob
		b := c.want(http.StatusOK, "GET", "/v1/jobs/"+id, nil, &j)
		if ok(j) {
			return j
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("job %s not as wanted after %s:\n%s", id, readyTimeout, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type sseEvent struct {
	name string
	data []byte
}

// events reads a job's event stream to its end.
func (c *apiClient) events(id string) []sseEvent {
	c.t.Helper()
	resp, err := c.hc.Get(c.base + "/v1/jobs/" + id + "/events")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		c.t.Fatalf("events: %d %s", resp.StatusCode, ct)
	}
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.name != "" {
				out = append(out, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = append(cur.data, strings.TrimPrefix(line, "data: ")...)
		}
	}
	if err := sc.Err(); err != nil {
		c.t.Fatalf("events: %v", err)
	}
	if len(out) == 0 {
		c.t.Fatal("events: an empty stream")
	}
	return out
}

// openAPIDoc is the part of the OpenAPI document the test reads.
type openAPIDoc struct {
	OpenAPI    string                                   `json:"openapi"`
	Paths      map[string]map[string]openAPIOperation   `json:"paths"`
	Components struct{ Schemas map[string]*jsonSchema } `json:"components"`
}

type openAPIOperation struct {
	Responses map[string]struct {
		Content map[string]struct {
			Schema *jsonSchema `json:"schema"`
		} `json:"content"`
	} `json:"responses"`
}

type jsonSchema struct {
	Ref                  string                 `json:"$ref"`
	Type                 string                 `json:"type"`
	Required             []string               `json:"required"`
	Properties           map[string]*jsonSchema `json:"properties"`
	Items                *jsonSchema            `json:"items"`
	AdditionalProperties json.RawMessage        `json:"additionalProperties"`
	Enum                 []string               `json:"enum"`
}

func (c *apiClient) openAPI() *openAPIDoc {
	c.t.Helper()
	var doc openAPIDoc
	c.want(http.StatusOK, "GET", "/v1/openapi.json", nil, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.") || len(doc.Paths) == 0 {
		c.t.Fatalf("GET /v1/openapi.json: openapi %q, %d paths", doc.OpenAPI, len(doc.Paths))
	}
	return &doc
}

// check checks an answer's body against the schema the document gives
// for its route and status.
func (d *openAPIDoc) check(t *testing.T, method, path string, code int, body []byte) {
	t.Helper()
	op, ok := d.Paths[path][strings.ToLower(method)]
	if !ok {
		t.Errorf("%s %s is not in the OpenAPI document", method, path)
		return
	}
	resp, ok := op.Responses[fmt.Sprint(code)]
	if !ok {
		t.Errorf("%s %s: status %d is not in the OpenAPI document", method, path, code)
		return
	}
	ct, ok := resp.Content["application/json"]
	if !ok {
		t.Errorf("%s %s %d: no application/json schema", method, path, code)
		return
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("%s %s: %v", method, path, err)
		return
	}
	if err := d.validate(ct.Schema, v, "$"); err != nil {
		t.Errorf("%s %s %d does not match its OpenAPI schema: %v\n%s", method, path, code, err, body)
	}
}

// validate checks v against s: types, required properties, enums, and
// no property the schema does not name where it names them all.
func (d *openAPIDoc) validate(s *jsonSchema, v any, at string) error {
	if s == nil {
		return nil
	}
	if s.Ref != "" {
		name := strings.TrimPrefix(s.Ref, "#/components/schemas/")
		ref, ok := d.Components.Schemas[name]
		if !ok {
			return fmt.Errorf("%s: no schema %s", at, name)
		}
		return d.validate(ref, v, at)
	}
	switch s.Type {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %T, want an object", at, v)
		}
		for _, r := range s.Required {
			if _, ok := m[r]; !ok {
				return fmt.Errorf("%s: no %q", at, r)
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if ps, ok := s.Properties[k]; ok {
				if err := d.validate(ps, m[k], at+"."+k); err != nil {
					return err
				}
				continue
			}
			if string(s.AdditionalProperties) == "true" {
				continue
			}
			var add jsonSchema
			if len(s.AdditionalProperties) > 0 && json.Unmarshal(s.AdditionalProperties, &add) == nil {
				if err := d.validate(&add, m[k], at+"."+k); err != nil {
					return err
				}
			} else if len(s.Properties) > 0 {
				return fmt.Errorf("%s: %q is not in the schema", at, k)
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: %T, want an array", at, v)
		}
		for i, x := range a {
			if err := d.validate(s.Items, x, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: %T, want a string", at, v)
		}
		if len(s.Enum) > 0 && !slices.Contains(s.Enum, str) {
			return fmt.Errorf("%s: %q not one of %v", at, str, s.Enum)
		}
	case "integer", "number":
		if _, ok := v.(float64); !ok {
			return fmt.Errorf("%s: %T, want a number", at, v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: %T, want a boolean", at, v)
		}
	}
	return nil
}
