package minion_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/certs/certstest"
	"github.com/overlordhq/overlord/minion"
	"github.com/overlordhq/overlord/minion/miniontest"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/rpc"
)

// typed is a harmless module whose method takes one parameter of every
// type and returns its arguments; fuzzing runs nothing else.
type typed struct{}

func (typed) Name() string { return "typed" }
func (typed) Doc() string  { return "returns its arguments" }
func (typed) Methods() []*modules.Method {
	return []*modules.Method{{Name: "all", Doc: "all types",
		Params: []modules.Param{
			{Name: "s", Type: modules.String, Required: true},
			{Name: "i", Type: modules.Int},
			{Name: "f", Type: modules.Float},
			{Name: "b", Type: modules.Bool},
			{Name: "l", Type: modules.List},
			{Name: "o", Type: modules.Object},
			{Name: "d", Type: modules.Duration},
			{Name: "sl", Type: "string|list"},
			{Name: "a", Type: modules.Any},
		},
		Run: func(_ context.Context, a modules.Args) (any, error) { return map[string]any(a), nil },
	}}
}

// FuzzHandler posts arbitrary bodies to the minion's JSON-RPC handler:
// it must never panic, and every 200 answer is one JSON-RPC 2.0 response
// with a result or an error.
func FuzzHandler(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","method":"Minion.Call","id":1,"params":{"module":"typed","method":"all","args":{"s":"x","i":3,"d":"1m30s","sl":["a"]}}}`,
		`{"jsonrpc":"2.0","method":"Minion.Call","id":1,"params":{"module":"typed","method":"all","positional":["x",2.5,1,true,[],{},90,"y",null]}}`,
		`{"jsonrpc":"2.0","method":"Minion.Call","id":"a","params":{"module":"typed","method":"nope"}}`,
		`{"jsonrpc":"2.0","method":"Minion.Describe","id":1}`,
		`{"jsonrpc":"2.0","method":"Minion.Call","id":1,"params":{"module":"system","method":"describe","positional":["typed"],"timeout_ms":-5}}`,
		`{"jsonrpc":"2.0","method":"Minion.Call","id":1,"params":null}`,
		`{"jsonrpc":"2.0","method":"Minion.Call","params":{}}`,
		`[]`, `{}`, `null`, ``,
	} {
		f.Add(s)
	}
	r := modules.NewRegistry()
	if err := r.Add(typed{}); err != nil {
		f.Fatal(err)
	}
	srv := miniontest.Serve(f, minion.Config{Bundle: certstest.NewCA(f).Minion("web1"), Registry: r})
	h, err := srv.HandlerForTest()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, rpc.Path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, req)
		if rr.Code != http.StatusOK {
			return
		}
		var resp struct {
			Version string           `json:"jsonrpc"`
			Result  *json.RawMessage `json:"result"`
			Error   *json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(rr.Body.Bytes(), &resp); err != nil {
			// gorilla answers a notification (no id) with an empty body.
			if rr.Body.Len() == 0 {
				return
			}
			t.Fatalf("body %q: answer %q is not JSON: %v", body, rr.Body.String(), err)
		}
		if resp.Version != "2.0" || (resp.Result == nil) == (resp.Error == nil) {
			t.Fatalf("body %q: answer %s", body, rr.Body.String())
		}
	})
}
