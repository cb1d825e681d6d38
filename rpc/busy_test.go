package rpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// A minion that turns a call away for now (HTTP 503) gives an error that
// says so (ErrBusy), still the internal *status.Error it always was; any
// other HTTP error page is not busy.
func TestClientBusy(t *testing.T) {
	for _, tt := range []struct {
		code int
		busy bool
	}{{http.StatusServiceUnavailable, true}, {http.StatusBadGateway, false}} {
		c := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "minion busy: too many requests at once", tt.code)
		}))
		err := c.Call(context.Background(), "web1", "Echo.Say", EchoArgs{}, &EchoReply{})
		if errors.Is(err, rpc.ErrBusy) != tt.busy {
			t.Errorf("HTTP %d: %v; ErrBusy %v, want %v", tt.code, err, errors.Is(err, rpc.ErrBusy), tt.busy)
		}
		var se *status.Error
		if !errors.As(err, &se) || se.Kind != status.KindInternal {
			t.Errorf("HTTP %d: %v (%T), want an internal *status.Error", tt.code, err, err)
		}
	}
}

// A JSON-RPC error whose data says busy (a minion at its async job
// limits) is ErrBusy too, and keeps its kind and message; without the
// flag it is not.
func TestClientBusyData(t *testing.T) {
	for _, busy := range []bool{true, false} {
		se := status.Errorf(status.KindInternal, "this minion is busy with 64 async jobs of ops")
		var werr error = se
		if busy {
			werr = rpc.Busy(se)
		}
		c := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "error": rpc.NewError(werr, nil)})
			w.Write(body)
		}))
		err := c.Call(context.Background(), "web1", "Echo.Say", EchoArgs{}, &EchoReply{})
		if errors.Is(err, rpc.ErrBusy) != busy {
			t.Errorf("busy %v: %v; ErrBusy %v", busy, err, errors.Is(err, rpc.ErrBusy))
		}
		var got *status.Error
		if !errors.As(err, &got) || got.Kind != status.KindInternal || got.Message != se.Message {
			t.Errorf("busy %v: %v, want %v", busy, err, se)
		}
	}
}
