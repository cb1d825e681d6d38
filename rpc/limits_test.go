package rpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/overlordhq/overlord/modules/command"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// An answer longer than the client reads comes from a minion that is up:
// it is classified internal, saying so, never unreachable (which would
// also mark the minion as not seen).
func TestClientAnswerOverLimit(t *testing.T) {
	const limit = 1 << 20
	for _, size := range []int{limit + 1, 3 * limit} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				head := `{"jsonrpc":"2.0","id":1,"result":{"text":"`
				tail := `"}}`
				io.WriteString(w, head+strings.Repeat("a", size-len(head)-len(tail))+tail)
			}))
			rpc.SetMaxResponse(c, limit)
			err := c.Call(context.Background(), "web1", "Echo.Say", EchoArgs{}, &EchoReply{})
			var se *status.Error
			if !errors.As(err, &se) || se.Kind != status.KindInternal || !strings.Contains(se.Message, fmt.Sprintf("over the %d bytes a reply may carry", limit)) {
				t.Fatalf("an answer of %d bytes with a limit of %d: %v (kind %s); want internal, over the limit", size, limit, err, status.KindOf(err))
			}
		})
	}
	// An answer of exactly the limit is read.
	c := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		head := `{"jsonrpc":"2.0","id":1,"result":{"text":"`
		tail := `"}}`
		io.WriteString(w, head+strings.Repeat("a", limit-len(head)-len(tail))+tail)
	}))
	rpc.SetMaxResponse(c, limit)
	var reply EchoReply
	if err := c.Call(context.Background(), "web1", "Echo.Say", EchoArgs{}, &reply); err != nil || len(reply.Text) == 0 {
		t.Fatalf("an answer of exactly the limit: %v", err)
	}
}

// A body cut short by a connection that breaks is still unreachable: the
// limit is told from a real end of the answer.
func TestClientAnswerCutShort(t *testing.T) {
	c := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "1000")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"text":"abc`)
	}))
	err := c.Call(context.Background(), "web1", "Echo.Say", EchoArgs{}, &EchoReply{})
	if k := status.KindOf(err); k != status.KindUnreachable {
		t.Errorf("an answer cut short: %v (kind %s), want unreachable", err, k)
	}
}

// The largest result command.run can return, with max_output at its
// limit and output that JSON escapes the most, fits a result, and the
// minion's answer with it fits what the client reads. No byte takes more
// than 6 in a JSON string ('<' is "\u003c", a byte that is not UTF-8
// "\ufffd"), which each byte value repeated shows; JSON concatenates a
// struct's fields, so the result is its two streams and the rest.
func TestLimitsAgree(t *testing.T) {
	const n = 4 << 10
	worst := 0
	for b := range 256 {
		data, err := json.Marshal(strings.Repeat(string([]byte{byte(b)}), n))
		if err != nil {
			t.Fatal(err)
		}
		worst = max(worst, len(data)-len(`""`))
	}
	if worst != 6*n {
		t.Errorf("the worst byte takes %d bytes in JSON, not 6", worst/n)
	}
	stream := 6*rpc.MaxOutput + len(`""`)
	rest, err := json.Marshal(command.Result{ExitCode: math.MinInt32, DurationMS: math.MinInt64, Truncated: true})
	if err != nil {
		t.Fatal(err)
	}
	result := len(rest) - 2*len(`""`) + 2*stream
	envelope, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": math.MaxUint32, "result": rpc.CallReply{Result: json.RawMessage(`{}`), DurationMS: math.MinInt64}})
	if err != nil {
		t.Fatal(err)
	}
	answer := len(envelope) - len(`{}`) + result
	t.Logf("command.run's largest result: %d bytes of JSON (limit %d), its answer %d (the client reads %d)", result, rpc.MaxResultBytes, answer, rpc.MaxResponseBytes)
	if result > rpc.MaxResultBytes || answer > rpc.MaxResponseBytes {
		t.Errorf("result %d bytes (limit %d), answer %d (limit %d)", result, rpc.MaxResultBytes, answer, rpc.MaxResponseBytes)
	}
	if rpc.MaxResponseBytes < rpc.MaxResultBytes+rpc.MaxJobsBytes {
		t.Errorf("the client reads %d bytes, less than a result and a Status reply's jobs (%d + %d)", rpc.MaxResponseBytes, rpc.MaxResultBytes, rpc.MaxJobsBytes)
	}
}

// A result over the limit is an internal error, not an answer the client
// cannot read.
func TestEncodeResultOverLimit(t *testing.T) {
	res := map[string]string{"stdout": strings.Repeat("<", 100)} // 613 bytes of JSON
	if raw, err := rpc.EncodeResultWithin(res, 613); err != nil || len(raw) != 613 {
		t.Errorf("613 bytes within 613: %d bytes, %v", len(raw), err)
	}
	_, err := rpc.EncodeResultWithin(res, 612)
	if k := status.KindOf(err); k != status.KindInternal || !strings.Contains(err.Error(), "613 bytes of JSON, over the 612 a reply may carry") {
		t.Errorf("a result of 613 bytes within 612: %v (kind %s)", err, k)
	}
	if _, err := rpc.EncodeResult(func() {}); status.KindOf(err) != status.KindInternal {
		t.Errorf("an unencodable result: %v", err)
	}
}

// A call's time limit bounds the wait for the answer, not the reading of
// an answer that is arriving: a big answer that keeps coming is read to
// its end after the deadline passes (a slow link, a busy machine), while
// one that stalls fails as a timeout, never as unreachable.
func TestClientReadsAnArrivingAnswer(t *testing.T) {
	const chunk = 256 << 10
	c := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"text":"`)
		w.(http.Flusher).Flush()
		for range 8 { // 2 MiB over about 1.2 s
			time.Sleep(150 * time.Millisecond) // the link's pace, not synchronisation
			io.WriteString(w, strings.Repeat("a", chunk))
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, `"}}`)
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var reply EchoReply
	if err := c.Call(ctx, "web1", "Echo.Say", EchoArgs{}, &reply); err != nil || len(reply.Text) != 8*chunk {
		t.Fatalf("an answer still arriving at the deadline: %d bytes, %v; want all of it", len(reply.Text), err)
	}

	stalled := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"text":"abc`)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- stalled.Call(ctx, "web1", "Echo.Say", EchoArgs{}, &EchoReply{}) }()
	select {
	case err := <-done:
		if k := status.KindOf(err); k != status.KindTimeout {
			t.Errorf("an answer that stalled: %v (kind %s), want timeout", err, k)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the call still waits for a stalled answer 30 s on")
	}

	// The caller's cancellation stops the reading at once.
	cctx, ccancel := context.WithCancel(context.Background())
	go func() { done <- stalled.Call(cctx, "web1", "Echo.Say", EchoArgs{}, &EchoReply{}) }()
	ccancel()
	select {
	case err := <-done:
		if k := status.KindOf(err); k != status.KindCancelled {
			t.Errorf("a cancelled call: %v (kind %s), want cancelled", err, k)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a cancelled call still waits 30 s on")
	}
}

// Probe's Wait answers once its client has gone; its reply records
// whether it was encoded.
type Probe struct{ encoded *atomic.Bool }

type ProbeReply struct{ encoded *atomic.Bool }

func (p Probe) Wait(r *http.Request, _ *EchoArgs, reply *ProbeReply) error {
	<-r.Context().Done()
	reply.encoded = p.encoded
	return nil
}

func (p ProbeReply) MarshalJSON() ([]byte, error) {
	p.encoded.Store(true)
	return []byte(`{}`), nil
}

// An answer whose client has gone is not encoded: a client that gave up
// and asks again does not make the minion build a big answer twice.
func TestServerSkipsAnswersNobodyWaitsFor(t *testing.T) {
	var encoded atomic.Bool
	h, err := rpc.NewServer(map[string]any{"Probe": Probe{&encoded}})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{}, 1)
	c := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { served <- struct{}{} }()
		h.ServeHTTP(w, r)
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := c.Call(ctx, "web1", "Probe.Wait", EchoArgs{}, &struct{}{}); status.KindOf(err) != status.KindTimeout {
		t.Errorf("call: %v, want timeout", err)
	}
	select {
	case <-served:
	case <-time.After(30 * time.Second):
		t.Fatal("the handler did not end 30 s after its client left")
	}
	if encoded.Load() {
		t.Error("the answer was encoded for a client that had gone")
	}
}
