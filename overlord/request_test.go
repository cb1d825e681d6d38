package overlord_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/overlordhq/overlord/overlord"
)

// TestCallRequestRefused: requests that mean something else to a reader
// less strict than encoding/json (a field in another case, a key given
// twice), and values past the request's bounds, are bad requests; those
// in bounds are not.
func TestCallRequestRefused(t *testing.T) {
	const ping = `"module": "test", "method": "ping"`
	for _, tc := range []struct {
		req, want string // want: in the message; "" for a good request
	}{
		{`{"target": "web1", ` + ping + `}`, ""},
		{`{"target": "web1", ` + ping + `, "args": {"env": {"A": "1", "a": "2"}}, "where": ["os=debian", "os=debian"]}`, ""},
		{`{"target": "web1", ` + ping + `, "args": {"list": [{"a": 1}, {"a": 2}]}}`, ""},
		{`{"target": "db*", ` + ping + `, "Target": "web1"}`, `"Target" is not a field`},
		{`{"TARGET": "web1", ` + ping + `}`, `"TARGET" is not a field`},
		{`{"target": "db*", ` + ping + `, "target": "web1"}`, `"target" is given twice`},
		{`{"target": "web1", ` + ping + `, "args": {"cmd": "true", "cmd": "false"}}`, `"args.cmd" is given twice`},
		{`{"target": "web1", ` + ping + `, "args": {"env": {"A": "1", "A": "2"}}}`, `"args.env.A" is given twice`},
		{`{"target": "web1", ` + ping + `, "args": {"list": [{"a": 1, "a": 2}]}}`, `"args.list.a" is given twice`},
		{`{"target": "web1", ` + ping + `, "colour": "red"}`, `unknown field "colour"`},
		{`{"target": "web1", ` + ping + `, "timeout": "2562047h47m16s"}`, "the longest a minion keeps a job"},
		{`{"target": "web1", ` + ping + `, "timeout": "169h"}`, "timeout: 169h is more than 168h"},
		{`{"target": "web1", ` + ping + `, "connect_timeout": "200h"}`, "connect_timeout"},
		{`{"target": "web1", ` + ping + `, "batch": "1", "batch_wait": "200h"}`, "batch_wait"},
		{`{"target": "web1", ` + ping + `, "timeout": "168h", "async": true}`, ""},
		{`{"target": "` + strings.Repeat("w,", overlord.MaxTarget/2) + `w", ` + ping + `}`, "target: 16385 bytes, at most 16384"},
		{`{"target": "web1", ` + ping + `, "where": [` + strings.Repeat(`"a=b", `, overlord.MaxWhere) + `"a=b"]}`, "where: 65 conditions, at most 64"},
	} {
		q, err := overlord.DecodeCallRequest(strings.NewReader(tc.req))
		if err == nil {
			_, err = q.Spec()
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%.100s: %v", tc.req, err)
		case tc.want != "" && (err == nil || !errors.Is(err, overlord.ErrBadRequest) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%.100s: %v, want a bad request saying %q", tc.req, err, tc.want)
		}
	}
}

// TestCallRequestTooBig: a request over MaxCallRequest is refused, and
// the error of the reader that cut it off (http.MaxBytesReader's, for the
// API's 413) is kept.
func TestCallRequestTooBig(t *testing.T) {
	big := `{"target": "web1", "module": "test", "method": "ping"}` + strings.Repeat(" ", overlord.MaxCallRequest)
	if _, err := overlord.DecodeCallRequest(strings.NewReader(big)); !errors.Is(err, overlord.ErrBadRequest) || !strings.Contains(err.Error(), "over 8 MiB") {
		t.Errorf("a request over 8 MiB: %v", err)
	}
	w := httptest.NewRecorder()
	_, err := overlord.DecodeCallRequest(http.MaxBytesReader(w, httptestBody(big), overlord.MaxCallRequest))
	var tooBig *http.MaxBytesError
	if !errors.Is(err, overlord.ErrBadRequest) || !errors.As(err, &tooBig) {
		t.Errorf("through http.MaxBytesReader: %v, want it to wrap *http.MaxBytesError", err)
	}
}

func httptestBody(s string) *readCloser { return &readCloser{strings.NewReader(s)} }

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }
