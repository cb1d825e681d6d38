package overlord

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// A synchronous call to minions behind gateways is sent to each gateway
// as bundles: one request per at most MaxBundle of its minions (the
// gateway's POST rpc.GatewayCallPath, which runs the call's step on its
// own pool, as the service does for a CLI, and streams one line per
// minion as it finishes). A gateway that cannot be connected to, or turns
// the bundle down, is skipped for each minion's next gateway; a minion
// with none left ends unreachable, the message naming every gateway
// tried. A bundle whose answer breaks off (the gateway died mid-call), or
// outlasts the call's wait and its grace, leaves its unreported minions
// RUNNING, like a synchronous call whose caller stopped waiting: the
// job's driver adopts what each minion kept, through its gateways, and
// what none kept ends lost. Nothing is sent twice.

// MaxBundle is the most minions one request to a gateway carries.
const MaxBundle = 500

// bundleGrace is how long past the call's wait (and callGrace) a bundle's
// answer may take to end before its unreported minions are left to the
// job's driver.
const bundleGrace = 5 * time.Second

// fanOutCall runs a synchronous call's step on minions, the ones behind
// gateways in bundles, and hands each entry to got as it arrives, on this
// goroutine.
func fanOutCall(ctx context.Context, client *rpc.Client, jobID string, h *handover, minions []jobs.Minion, forks int,
	step func(context.Context, jobs.Minion) status.Result, got func(jobs.Minion, status.Result)) {
	var direct, behind []jobs.Minion
	for _, m := range minions {
		if len(m.Via) > 0 && len(client.Gateways(m.Name)) > 0 {
			behind = append(behind, m)
		} else {
			direct = append(direct, m)
		}
	}
	if len(behind) == 0 {
		fanout.Run(ctx, minions, forks, step, got)
		return
	}
	type entry struct {
		m jobs.Minion
		r status.Result
	}
	ch := make(chan entry, 64)
	send := func(m jobs.Minion, r status.Result) { ch <- entry{m, r} }
	var wg sync.WaitGroup
	wg.Go(func() { fanout.Run(ctx, direct, forks, step, send) })
	b := &bundler{client: client, jobID: jobID, h: h, forks: forks, got: send, tried: map[string][]string{}}
	wg.Go(func() { b.send(ctx, behind, 0) })
	go func() { wg.Wait(); close(ch) }()
	for e := range ch {
		got(e.m, e.r)
	}
}

// bundler sends one call's bundles.
type bundler struct {
	client *rpc.Client
	jobID  string
	h      *handover
	forks  int
	got    func(jobs.Minion, status.Result)

	mu    sync.Mutex
	tried map[string][]string // minion -> why each gateway tried failed
	seq   int                 // bundles sent, for their keys on the gateway
}

// send sends minions to their attempt-th gateway, in bundles, and waits
// for every result (failing over as it goes).
func (b *bundler) send(ctx context.Context, minions []jobs.Minion, attempt int) {
	groups := map[string][]jobs.Minion{}
	gws := map[string]rpc.Gateway{}
	for _, m := range minions {
		route := b.client.Gateways(m.Name)
		if attempt >= len(route) {
			b.mu.Lock()
			why := b.tried[m.Name]
			b.mu.Unlock()
			b.got(m, status.Result{State: status.Finished, Error: status.Errorf(status.KindUnreachable,
				"no gateway of %s could be reached: %s", m.Name, strings.Join(why, "; "))})
			continue
		}
		gw := route[attempt]
		gws[gw.Name] = gw
		groups[gw.Name] = append(groups[gw.Name], m)
	}
	var wg sync.WaitGroup
	for name, ms := range groups {
		for start := 0; start < len(ms); start += MaxBundle {
			bundle := ms[start:min(start+MaxBundle, len(ms))]
			wg.Go(func() {
				if failed := b.post(ctx, gws[name], bundle); len(failed) > 0 {
					b.send(ctx, failed, attempt+1)
				}
			})
		}
	}
	wg.Wait()
}

// post sends one bundle to gw and hands on its results. It returns the
// minions to try on their next gateway: all of the bundle's if gw could
// not be reached or turned it down (nothing was sent).
func (b *bundler) post(ctx context.Context, gw rpc.Gateway, minions []jobs.Minion) (failed []jobs.Minion) {
	b.mu.Lock()
	b.seq++
	seq := b.seq
	b.mu.Unlock()
	req := fanOutRequest{JobID: b.jobID, Bundle: seq, Params: b.h.params, Forks: b.forks, WaitUntil: b.h.waitUntil}
	if b.h.connect > 0 {
		req.ConnectTimeoutMS = b.h.connect.Milliseconds()
	}
	// The gateway's clock may differ from this one's: it goes by how long
	// is left of the wait.
	if left := time.Until(b.h.waitUntil); left > 0 {
		req.WaitMS = max(left.Milliseconds(), 1)
	}
	byName := make(map[string]jobs.Minion, len(minions))
	for _, m := range minions {
		byName[m.Name] = m
		req.Minions = append(req.Minions, fanOutMinion{Name: m.Name, Addr: m.Addr, Fingerprint: m.Fingerprint})
	}
	body, err := json.Marshal(req)
	if err != nil {
		return b.refused(gw, minions, err.Error())
	}
	// The bundle's answer is read past Ctrl-C (the gateway is asked to
	// stop, and reports what it did not send) for bundleStopGrace at
	// most, never past the wait.
	rctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), b.h.waitUntil.Add(callGrace+bundleGrace))
	defer cancel()
	ended := make(chan struct{})
	defer close(ended)
	stop := context.AfterFunc(ctx, func() {
		cut := time.AfterFunc(bundleStopGrace, cancel)
		b.stop(gw, ended)
		<-ended
		cut.Stop()
	})
	defer stop()
	resp, err := b.client.PostGateway(rctx, gw, rpc.GatewayCallPath, body)
	if err != nil {
		if rpc.IsGatewayDialError(err) {
			return b.refused(gw, minions, rpc.Classify(rctx, err).Message)
		}
		b.unreported(gw, minions, nil)
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return b.refused(gw, minions, fmt.Sprintf("HTTP %s: %s", resp.Status, strings.TrimSpace(string(msg))))
	}
	reported := make(map[string]bool, len(minions))
	defer func() { b.unreported(gw, minions, reported) }()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var l fanOutLine
		if err := dec.Decode(&l); err != nil {
			return nil
		}
		if l.End {
			var never []string
			for _, n := range l.Unsent {
				if _, ok := byName[n]; ok {
					never = append(never, n)
				}
			}
			b.h.mu.Lock()
			b.h.never = append(b.h.never, never...)
			b.h.mu.Unlock()
			return nil
		}
		m, ok := byName[l.Minion]
		if !ok || reported[l.Minion] || l.Result == nil {
			continue
		}
		reported[l.Minion] = true
		r := *l.Result
		r.Via = gw.Name
		if r.Error != nil && viaGatewayKinds[r.Error.Kind] && !strings.Contains(r.Error.Message, gw.Name) {
			// The gateway could not reach the minion: say which did.
			r.Error = status.Errorf(r.Error.Kind, "via gateway %s: %s", gw.Name, r.Error.Message)
		}
		b.got(m, r)
	}
}

// viaGatewayKinds are the failures to reach a minion, whose message names
// the gateway that tried.
var viaGatewayKinds = map[status.Kind]bool{status.KindUnreachable: true, status.KindTLS: true, status.KindTimeout: true}

// refused notes why gw failed for minions, which go on to their next
// gateway.
func (b *bundler) refused(gw rpc.Gateway, minions []jobs.Minion, why string) []jobs.Minion {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range minions {
		b.tried[m.Name] = append(b.tried[m.Name], fmt.Sprintf("via gateway %s: %s", gw.Name, why))
	}
	return minions
}

// unreported makes the minions gw did not report on RUNNING: it went away
// or stopped answering, and they may hold the call.
func (b *bundler) unreported(gw rpc.Gateway, minions []jobs.Minion, reported map[string]bool) {
	for _, m := range minions {
		if !reported[m.Name] {
			b.got(m, status.Result{State: status.Running, Via: gw.Name})
		}
	}
}

// stop asks gw to stop the job's bundles (Ctrl-C), until their answers
// end.
func (b *bundler) stop(gw rpc.Gateway, ended <-chan struct{}) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := b.client.PostGateway(ctx, gw, gatewayStopPath+b.jobID, nil)
		cancel()
		if err != nil {
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			return
		}
		select {
		case <-ended:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// bundleStopGrace is how long after Ctrl-C a bundle's answer may take to
// end (the gateway asked to stop reports what it did not send) before
// its unreported minions are left to the job's driver.
const bundleStopGrace = 10 * time.Second
