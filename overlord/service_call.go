package overlord

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// The local protocol's fan-out of a synchronous call: the CLI sends the
// call and its minions in one request, the service runs the call's step
// (callStep) for each on its pool, at most Forks at once, and streams one
// line per minion as it finishes, then the minions it did not send the
// call to. POST serviceStopPath + the job ID stops it early (Ctrl-C): the
// service sends no more calls and streams what it has, as the CLI would.
const (
	serviceCallPath = "/local/call"
	serviceStopPath = "/local/stop/"
	// fanOutFlush is how long a result may wait in the service's buffer
	// before it is sent on.
	fanOutFlush = 10 * time.Millisecond
)

// fanOutRequest is a synchronous call for the service to fan out.
type fanOutRequest struct {
	JobID     string         `json:"job_id"`
	Bundle    int            `json:"bundle,omitempty"` // a gateway's bundle of the job (bundle.go)
	Params    rpc.CallParams `json:"params"`
	Minions   []fanOutMinion `json:"minions"`
	Forks     int            `json:"forks"`
	WaitUntil time.Time      `json:"wait_until"`
	// WaitMS is how long the call may still wait when it was sent: a
	// gateway goes by it (from its own clock) rather than by WaitUntil,
	// which is the overlord's clock.
	WaitMS           int64 `json:"wait_ms,omitempty"`
	ConnectTimeoutMS int64 `json:"connect_timeout_ms"`
}

// fanOutMinion is a minion to call, as the caller's registry has it
// (read moments ago): the pool takes its address and pin from it.
type fanOutMinion struct {
	Name        string   `json:"name"`
	Addr        string   `json:"addr"`
	Fingerprint string   `json:"fingerprint"`
	Via         []string `json:"via,omitempty"` // its gateways, the first preferred
}

// fanOutLine is one line of the answer: a minion's entry, or the end with
// the minions the call was not sent to.
type fanOutLine struct {
	Minion string         `json:"minion,omitempty"`
	Result *status.Result `json:"result,omitempty"`
	End    bool           `json:"end,omitempty"`
	Unsent []string       `json:"unsent,omitempty"`
}

// fanOut runs a synchronous call's step on minions through the service and
// hands each entry to got as it arrives, on this goroutine. Ctrl-C (ctx)
// asks the service to stop sending and still reads what it reports, so
// the minions the call never reached are known (h.never). If the service
// goes away mid-call, the minions it did not report on are RUNNING: the
// job's driver adopts what they kept, and those never called end lost.
// It returns false, having called nobody, if the service turns the call
// down: the caller makes it another way.
func (c *ServiceConn) fanOut(ctx context.Context, jobID string, minions []jobs.Minion, forks int, h *handover, got func(jobs.Minion, status.Result)) bool {
	byName := make(map[string]jobs.Minion, len(minions))
	req := fanOutRequest{JobID: jobID, Params: h.params, Forks: forks, WaitUntil: h.waitUntil, ConnectTimeoutMS: h.connect.Milliseconds()}
	for _, m := range minions {
		byName[m.Name] = m
		req.Minions = append(req.Minions, fanOutMinion{Name: m.Name, Addr: m.Addr, Fingerprint: m.Fingerprint, Via: m.Via})
	}
	body, err := json.Marshal(req)
	if err != nil {
		return false
	}
	hreq, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, "http://overlord"+serviceCallPath, bytes.NewReader(body))
	if err != nil {
		return false
	}
	hreq.Header.Set("Content-Type", "application/json")
	ended := make(chan struct{})
	defer close(ended)
	stop := context.AfterFunc(ctx, func() { c.stop(jobID, ended) })
	defer stop()
	resp, err := c.http.Do(hreq)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			c.logger.Warn("the service is gone; calling the minions directly", "err", err)
			return false // nothing was sent
		}
		// The request may have reached the service: its minions are
		// the driver's to adopt.
		c.unreported(minions, nil, got)
		return true
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		c.logger.Warn("the service turned the call down; calling the minions directly", "status", resp.StatusCode, "msg", string(bytes.TrimSpace(msg)))
		return false
	}
	reported := make(map[string]bool, len(minions))
	defer c.unreported(minions, reported, got)
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var l fanOutLine
		if err := dec.Decode(&l); err != nil {
			return true
		}
		if l.End {
			h.mu.Lock()
			h.never = append(h.never, l.Unsent...)
			h.mu.Unlock()
			return true
		}
		m, ok := byName[l.Minion]
		if !ok || reported[l.Minion] || l.Result == nil {
			continue
		}
		reported[l.Minion] = true
		got(m, *l.Result)
	}
}

// unreported makes the minions the service did not report on RUNNING: it
// went away, and they may hold the call.
func (c *ServiceConn) unreported(minions []jobs.Minion, reported map[string]bool, got func(jobs.Minion, status.Result)) {
	for _, m := range minions {
		if !reported[m.Name] {
			got(m, status.Result{State: status.Running})
		}
	}
}

// stop asks the service to stop fanning out job id's call (Ctrl-C), again
// while it does not know the call yet (the stop can overtake the call),
// until the call's answer has ended.
func (c *ServiceConn) stop(id string, ended <-chan struct{}) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := serviceDo(ctx, c.http, http.MethodPost, serviceStopPath+id, http.StatusNoContent, nil)
		cancel()
		var se *serviceStatusError
		if !errors.As(err, &se) || se.code != http.StatusNotFound {
			return
		}
		select {
		case <-ended:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// call fans a synchronous call out for a CLI (ServiceConn.fanOut).
func (s *Service) call(w http.ResponseWriter, r *http.Request) {
	var req fanOutRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, rpc.MaxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, fmt.Sprintf("unreadable call: %v", err), http.StatusBadRequest)
		return
	}
	if u, err := uuid.Parse(req.JobID); err != nil || u.String() != req.JobID {
		http.Error(w, fmt.Sprintf("%q is not a job ID", req.JobID), http.StatusBadRequest)
		return
	}
	if req.WaitMS < 0 || time.Duration(req.WaitMS)*time.Millisecond > MaxWait {
		http.Error(w, fmt.Sprintf("wait_ms %d: not between 0 and %d (%s)", req.WaitMS, MaxWait.Milliseconds(), MaxWait), http.StatusBadRequest)
		return
	}
	if req.WaitMS > 0 {
		req.WaitUntil = time.Now().Add(time.Duration(req.WaitMS) * time.Millisecond)
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	job := callKey(r, req.JobID)
	key := job
	if req.Bundle > 0 {
		key = fmt.Sprintf("%s/%d", job, req.Bundle)
	}
	if !s.calls.add(key, cancel) {
		http.Error(w, "a call of job "+req.JobID+" is already running", http.StatusConflict)
		return
	}
	defer s.calls.remove(key)
	// A job's bundles share its --forks: a gateway sent three bundles of
	// a call makes at most --forks calls at once for it, not three times
	// as many.
	forks := s.calls.forks(job, req.Forks)
	defer s.calls.doneForks(job)
	if req.ConnectTimeoutMS > 0 {
		ctx = rpc.WithConnectTimeout(ctx, time.Duration(req.ConnectTimeoutMS)*time.Millisecond)
	}
	h := &handover{waitUntil: req.WaitUntil, params: req.Params, connect: time.Duration(req.ConnectTimeoutMS) * time.Millisecond}
	mm := s.o.metrics.Method(req.Params.Module, req.Params.Method)
	started := time.Now()
	step := instrumented(mm, callStep(h))
	client := s.pool.client.Shared()
	// The caller read the registry moments ago: a minion added again
	// since the pool last read it is called at its new address, pinned
	// by its new certificate.
	minions := make([]jobs.Minion, len(req.Minions))
	for i, m := range req.Minions {
		minions[i] = jobs.Minion{Name: m.Name, Addr: m.Addr, Fingerprint: m.Fingerprint, Via: m.Via}
	}
	s.pool.learn(minions, false)
	w.Header().Set("Content-Type", "application/x-ndjson")
	out := &flushWriter{w: w, rc: http.NewResponseController(w), done: make(chan struct{})}
	defer out.stop()
	go out.loop(fanOutFlush)
	enc := json.NewEncoder(out)
	fanOutCall(ctx, client, req.JobID, h, minions, req.Forks, func(ctx context.Context, m jobs.Minion) status.Result {
		select {
		case forks <- struct{}{}:
			defer func() { <-forks }()
		case <-ctx.Done():
			return h.unsent(m.Name)
		}
		return step(ctx, client, m)
	}, func(m jobs.Minion, r status.Result) {
		_ = enc.Encode(fanOutLine{Minion: m.Name, Result: &r})
	})
	h.mu.Lock()
	unsent := h.never
	h.mu.Unlock()
	_ = enc.Encode(fanOutLine{End: true, Unsent: unsent})
	mm.CallDone(time.Since(started))
}

// stopCall stops a call the service fans out: the Ctrl-C of its CLI.
func (s *Service) stopCall(w http.ResponseWriter, r *http.Request) {
	if !s.calls.cancel(callKey(r, r.PathValue("id"))) {
		http.Error(w, "no such call", http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// callKey is the key of job id's call among the running calls: on a
// gateway, the job ID of the identity calling (its TLS client
// certificate), so that no identity stops, or takes the place of,
// another's call; the job ID alone on the local socket, whose only user
// is the service's owner.
func callKey(r *http.Request, id string) string {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return r.TLS.PeerCertificates[0].Subject.CommonName + " " + id
	}
	return id
}

// runningCalls are the calls the service fans out now, by callKey.
type runningCalls struct {
	mu    sync.Mutex
	m     map[string]context.CancelFunc
	slots map[string]*jobForks // by callKey of the job, without the bundle
}

// jobForks bounds the calls in flight of one job's bundles.
type jobForks struct {
	sem  chan struct{}
	refs int
}

// forks returns the places for calls in flight of job, n of them (or
// fanout.DefaultForks) if its first bundle: the caller sends to it to
// take one, and calls doneForks when the bundle ends.
func (c *runningCalls) forks(job string, n int) chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.slots == nil {
		c.slots = map[string]*jobForks{}
	}
	f, ok := c.slots[job]
	if !ok {
		if n <= 0 {
			n = fanout.DefaultForks
		}
		f = &jobForks{sem: make(chan struct{}, n)}
		c.slots[job] = f
	}
	f.refs++
	return f.sem
}

func (c *runningCalls) doneForks(job string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.slots[job]; f != nil {
		if f.refs--; f.refs <= 0 {
			delete(c.slots, job)
		}
	}
}

func (c *runningCalls) add(id string, cancel context.CancelFunc) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]context.CancelFunc{}
	}
	if _, ok := c.m[id]; ok {
		return false
	}
	c.m[id] = cancel
	return true
}

func (c *runningCalls) remove(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

// cancel stops the call of job id, and every bundle of it (a gateway's).
func (c *runningCalls) cancel(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	found := false
	for k, cancel := range c.m {
		if k == id || strings.HasPrefix(k, id+"/") {
			cancel()
			found = true
		}
	}
	return found
}

// flushWriter writes to an HTTP answer and sends what it holds on at most
// every interval (loop), and at stop: results stream without a write per
// line. done is made with it.
type flushWriter struct {
	mu    sync.Mutex
	w     io.Writer
	rc    *http.ResponseController
	dirty bool
	done  chan struct{}
	once  sync.Once
	err   error
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	n, err := f.w.Write(p)
	f.dirty, f.err = true, err
	return n, err
}

func (f *flushWriter) flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dirty && f.err == nil {
		if err := f.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			f.err = err
		}
		f.dirty = false
	}
}

func (f *flushWriter) loop(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-f.done:
			return
		case <-t.C:
			f.flush()
		}
	}
}

func (f *flushWriter) stop() {
	f.once.Do(func() { close(f.done) })
	f.flush()
}
