package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/overlordhq/overlord/status"
)

// heartbeat is how often an idle event stream sends a comment, so that
// proxies and clients see it alive.
const heartbeat = 15 * time.Second

// resultEvent is the data of an event stream's "result" event.
type resultEvent struct {
	Minion string        `json:"minion"`
	Result status.Result `json:"result"`
}

// outputEvent is the data of an "output" event: complete lines a running
// minion job printed since the last one.
type outputEvent struct {
	Minion string `json:"minion"`
	Data   string `json:"data"`
}

// events is GET /v1/jobs/{id}/events, a Server-Sent Events stream: "job"
// (the job document) first; then "result" when a minion's entry changes
// (state, minion job, result), "output" as running minion jobs' output
// grows; "end" with the final job document when the job is FINISHED,
// and the stream ends. A client that reconnects gets "job" again, with
// every entry as it stands.
func (a *API) events(w http.ResponseWriter, r *http.Request) {
	rec, entries, err := a.o.Store.Job(r.PathValue("id"))
	if err != nil {
		a.storeError(w, err)
		return
	}
	rc := http.NewResponseController(w)
	// A stream lasts as long as the job: no write deadline.
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(event string, v any) error {
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data); err != nil {
			return err
		}
		return rc.Flush()
	}
	if send("job", rec.Status(entries)) != nil {
		return
	}
	if rec.State == status.Finished {
		_ = send("end", rec.Status(entries))
		return
	}
	last := make(map[string][]byte, len(entries))
	for n, e := range entries {
		last[n], _ = json.Marshal(e)
	}
	var emitErr error
	emit := func(minion, lines string) {
		if emitErr == nil {
			emitErr = send("output", outputEvent{minion, lines})
		}
	}
	follower, err := a.o.Follower(rec)
	if err != nil {
		a.logger.Warn("api: events without output", "job", rec.ID, "err", err)
	} else {
		defer follower.Close()
	}
	ctx := r.Context()
	tick := time.NewTicker(a.poll)
	defer tick.Stop()
	quiet := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.done:
			return
		case <-tick.C:
		}
		if follower != nil {
			follower.Read(ctx, entries, emit)
		}
		nrec, nentries, err := a.o.Store.Job(rec.ID)
		if err != nil {
			a.logger.Warn("api: events", "job", rec.ID, "err", err)
			return
		}
		rec, entries = nrec, nentries
		sent := false
		for n, e := range entries {
			b, _ := json.Marshal(e)
			if bytes.Equal(b, last[n]) {
				continue
			}
			last[n] = b
			if emitErr = send("result", resultEvent{n, e}); emitErr != nil {
				return
			}
			sent = true
		}
		if rec.State == status.Finished {
			if follower != nil {
				follower.Flush(emit)
			}
			_ = send("end", rec.Status(entries))
			return
		}
		if emitErr != nil {
			return
		}
		if sent {
			quiet = time.Now()
		} else if time.Since(quiet) >= heartbeat {
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
			quiet = time.Now()
		}
	}
}
