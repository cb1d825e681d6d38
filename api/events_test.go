package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/overlordhq/overlord/internal/etcdtest"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/jobs/jobstest"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

// waitFor is how long a test waits for something that should happen at
// once: a deadline against hanging, not a speed assertion.
const waitFor = 30 * time.Second

// eventsAPI is an API over a fresh state directory with one RUNNING job
// of minions a and b, served over HTTP to the caller "test"; handlers
// counts the requests being served.
type eventsAPI struct {
	api      *API
	o        *overlord.Overlord
	srv      *httptest.Server
	job      string
	handlers atomic.Int64
}

func newEventsAPI(t *testing.T, cfg Config) *eventsAPI {
	t.Helper()
	store := jobstest.New(t)
	return newEventsAPIOn(t, cfg, store)
}

// newEventsAPIOn is newEventsAPI on the given (initialised) store.
func newEventsAPIOn(t *testing.T, cfg Config, store *jobs.Store) *eventsAPI {
	t.Helper()
	e := &eventsAPI{o: overlord.NewWithStore(t.TempDir(), "", store, nil)}
	rec := jobs.Record{Target: "a,b", Module: "test", Method: "ping", Async: true}
	if err := e.o.Store.CreateJob(&rec, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	e.job = rec.ID
	cfg.Overlord = e.o
	if cfg.EventPoll == 0 {
		cfg.EventPoll = 5 * time.Millisecond
	}
	e.api = New(cfg)
	h := e.api.Handler()
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.handlers.Add(1)
		defer e.handlers.Add(-1)
		h.ServeHTTP(w, r.WithContext(WithCaller(r.Context(), Caller{Name: "test", Via: "cert"})))
	}))
	e.srv.Listener = smallBuffers{e.srv.Listener}
	e.srv.Start()
	t.Cleanup(func() {
		e.api.Close()
		e.srv.CloseClientConnections()
		e.srv.Close()
	})
	return e
}

// smallBuffers gives the connections it accepts a small send buffer, so
// that a client that does not read blocks the server's writes soon.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4 << 10)
	}
	return c, err
}

// write sets minion's entry, and the job's state if st is not "".
func (e *eventsAPI) write(t *testing.T, minion string, r status.Result, st status.State) {
	t.Helper()
	_, err := e.o.Store.Write(e.job, map[string]status.Result{minion: r}, func(rec *jobs.Record) error {
		if st != "" {
			rec.State = st
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// sse reads a stream's events.
type sse struct {
	resp *http.Response
	rd   *bufio.Reader
}

// get asks for the job's event stream, with a deadline on the whole
// stream: an event that never comes fails the test rather than hanging it.
func (e *eventsAPI) get(t *testing.T) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/v1/jobs/"+e.job+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func (e *eventsAPI) open(t *testing.T) *sse {
	t.Helper()
	resp := e.get(t)
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("events: %d %s", resp.StatusCode, b)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return &sse{resp, bufio.NewReader(resp.Body)}
}

// next returns the next event's name and data ("" at the end).
func (s *sse) next(t *testing.T) (string, string) {
	t.Helper()
	var name, data string
	for {
		line, err := s.rd.ReadString('\n')
		if err == io.EOF && line == "" {
			return "", ""
		}
		if err != nil {
			t.Fatal(err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && name != "":
			return name, data
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		}
	}
}

func (s *sse) want(t *testing.T, name string) string {
	t.Helper()
	got, data := s.next(t)
	if got != name {
		t.Fatalf("event %q %.200s, want %q", got, data, name)
	}
	return data
}

// TestEventStreamsShareAWatcher: the streams of one job share one
// watcher, which reads the store once a poll for all of them, and each
// stream gets every event: job, the results as they change, the end.
func TestEventStreamsShareAWatcher(t *testing.T) {
	e := newEventsAPI(t, Config{})
	const n = 10
	streams := make([]*sse, n)
	for i := range streams {
		streams[i] = e.open(t)
		streams[i].want(t, "job")
	}
	e.api.mu.Lock()
	watchers := len(e.api.watchers)
	var open int
	for _, w := range e.api.watchers {
		open = len(w.streams)
	}
	e.api.mu.Unlock()
	if watchers != 1 || open != n {
		t.Errorf("%d streams of one job: %d watchers with %d streams, want 1 with %d", n, watchers, open, n)
	}
	e.write(t, "a", status.Result{State: status.Finished, OK: true, Result: json.RawMessage(`"pong"`)}, "")
	e.write(t, "b", status.Result{State: status.Finished, OK: true, Result: json.RawMessage(`"pong"`)}, status.Finished)
	for i, s := range streams {
		seen := map[string]bool{}
		for {
			name, data := s.next(t)
			if name == "" {
				t.Fatalf("stream %d: ended without end", i)
			}
			if name == "result" {
				var r resultEvent
				if err := json.Unmarshal([]byte(data), &r); err != nil {
					t.Fatal(err)
				}
				seen[r.Minion] = true
			}
			if name == "end" {
				break
			}
		}
		if !seen["a"] || !seen["b"] {
			t.Errorf("stream %d: results of %v, want a and b", i, seen)
		}
		if name, _ := s.next(t); name != "" {
			t.Errorf("stream %d: %q after end", i, name)
		}
	}
	for deadline := time.Now().Add(waitFor); ; time.Sleep(time.Millisecond) {
		e.api.mu.Lock()
		left := len(e.api.watchers)
		e.api.mu.Unlock()
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d watchers left after the job's end", left)
		}
	}
}

// TestEventStreamsBounded: past MaxEventStreams, a stream is refused at
// once with 503 busy; once one ends, there is room again.
func TestEventStreamsBounded(t *testing.T) {
	e := newEventsAPI(t, Config{MaxEventStreams: 2})
	first := e.open(t)
	first.want(t, "job")
	e.open(t).want(t, "job")
	resp := e.get(t)
	var doc errorDoc
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != http.StatusServiceUnavailable || doc.Error.Kind != KindBusy {
		t.Errorf("a third stream: %d %+v %v, want 503 busy", resp.StatusCode, doc, err)
	}
	resp.Body.Close()
	first.resp.Body.Close()
	for deadline := time.Now().Add(waitFor); ; time.Sleep(time.Millisecond) {
		resp, err := http.Get(e.srv.URL + "/v1/jobs/" + e.job + "/events")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no room after a stream ended: %d", resp.StatusCode)
		}
	}
}

// TestEventStreamStuckClient: a client that stops reading its stream in
// the middle of an event does not keep the stream's handler (or the
// server's shutdown) waiting once the API is closed.
func TestEventStreamStuckClient(t *testing.T) {
	e := newEventsAPI(t, Config{})
	conn, err := net.DialTCP("tcp", nil, e.srv.Listener.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetReadBuffer(4 << 10); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, "GET /v1/jobs/"+e.job+"/events HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(conn)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "event: job") {
			break
		}
	}
	// A result bigger than the sockets between hold (their buffers are
	// small): its event's write blocks, as the client reads no more.
	big, _ := json.Marshal(strings.Repeat("x", 4<<20))
	e.write(t, "a", status.Result{State: status.Finished, OK: true, Result: big}, "")
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "event: result") {
			break
		}
	}
	closed := make(chan struct{})
	go func() {
		e.api.Close()
		close(closed)
	}()
	deadline := time.Now().Add(waitFor)
	for e.handlers.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the stream's handler still writes %s after Close", waitFor)
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-closed:
	case <-time.After(waitFor):
		t.Fatal("Close still waiting")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := (&http.Server{}).Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestReplayKeepsLastLines: the output a watcher keeps for streams that
// join later is each minion's last whole lines, within its share.
func TestReplayKeepsLastLines(t *testing.T) {
	r := newReplay(maxReplay / minReplay * 4) // many minions: each keeps minReplay
	line := strings.Repeat("x", 1000) + "\n"
	for range 100 {
		r.add("a", line)
	}
	r.add("b", "one\n")
	evs := r.events()
	if len(evs) != 2 {
		t.Fatalf("%d events, want one per minion", len(evs))
	}
	var a, b outputEvent
	if json.Unmarshal(evs[0].data, &a) != nil || json.Unmarshal(evs[1].data, &b) != nil {
		t.Fatal("undecodable events")
	}
	if a.Minion != "a" || len(a.Data) > minReplay || len(a.Data)%len(line) != 0 || len(a.Data) == 0 {
		t.Errorf("a keeps %d bytes, want whole lines within %d", len(a.Data), minReplay)
	}
	if b.Minion != "b" || b.Data != "one\n" {
		t.Errorf("b keeps %q", b.Data)
	}
	// A line longer than the share: its end is kept.
	r.add("c", strings.Repeat("y", 2*minReplay)+"\n")
	if got := r.lines["c"]; len(got) != minReplay || got[len(got)-1] != '\n' {
		t.Errorf("a long line: kept %d bytes", len(got))
	}
}

// TestEventsFromAnotherReplica: on an etcd store, a stream served by one
// replica gets the results another replica writes, from an etcd watch:
// this API's poll is an hour long, so only the watch can bring them.
func TestEventsFromAnotherReplica(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.FreePorts(t, 2))
	mine := jobstest.NewEtcd(t, "etcd://"+strings.TrimPrefix(c.Endpoints[0], "http://"))
	e := newEventsAPIOn(t, Config{EventPoll: time.Hour}, mine)
	other, err := jobs.Open(mine.Address(), "", jobs.Options{LockTimeout: jobstest.EtcdTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	write := func(minion string, st status.State) {
		t.Helper()
		r := map[string]status.Result{minion: {State: status.Finished, OK: true, Result: json.RawMessage(`"pong"`)}}
		if _, err := other.Write(e.job, r, func(rec *jobs.Record) error {
			if st != "" {
				rec.State = st
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	s := e.open(t)
	s.want(t, "job")
	write("a", "")
	var r resultEvent
	if err := json.Unmarshal([]byte(s.want(t, "result")), &r); err != nil || r.Minion != "a" || !r.Result.OK {
		t.Fatalf("result event %+v (%v), want a's", r, err)
	}
	write("b", status.Finished)
	if err := json.Unmarshal([]byte(s.want(t, "result")), &r); err != nil || r.Minion != "b" {
		t.Fatalf("result event %+v (%v), want b's", r, err)
	}
	end := s.want(t, "end")
	if !strings.Contains(end, `"FINISHED"`) {
		t.Errorf("end event %s, want the job FINISHED", end)
	}
}
