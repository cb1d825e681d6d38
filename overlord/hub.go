package overlord

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/overlordhq/overlord/job"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// maxWaitJobs is how many jobs one long poll of a minion may carry
// (minion.MaxWaitJobs); with more waiting, a round asks without waiting,
// for at most maxStatusJobs (minion.MaxStatusJobs).
const (
	maxWaitJobs   = 100
	maxStatusJobs = 1000
)

// statusHub is the service's scheduler of status polls: however many jobs
// its drivers follow on a minion, it keeps at most one Minion.Status call
// to that minion in flight, a long poll carrying every job waited on, and
// hands each driver its job's state when the job finishes or the driver's
// wait ends. 200 jobs on 10 minions are 10 long polls, not 2,000.
type statusHub struct {
	client *rpc.Client
	mu     sync.Mutex
	polls  map[string]*minionPoll // by minion name, while jobs are waited on
}

type minionPoll struct {
	waiters []*statusWaiter
}

type statusWaiter struct {
	jobID string
	until time.Time // answer by then, changed or not
	ch    chan job.PollResult
}

var _ job.Poller = (*statusHub)(nil)

func newStatusHub(c *rpc.Client) *statusHub {
	return &statusHub{client: c, polls: map[string]*minionPoll{}}
}

// Status returns the state of a minion's job, waiting up to wait for it to
// finish: the driver's status call, shared with every other driver's.
func (h *statusHub) Status(ctx context.Context, name, jobID string, wait time.Duration) job.PollResult {
	w := &statusWaiter{jobID: jobID, until: time.Now().Add(wait), ch: make(chan job.PollResult, 1)}
	h.mu.Lock()
	mp := h.polls[name]
	if mp == nil {
		mp = &minionPoll{}
		h.polls[name] = mp
		go h.loop(name, mp)
	}
	mp.waiters = append(mp.waiters, w)
	h.mu.Unlock()
	select {
	case r := <-w.ch:
		return r
	case <-ctx.Done():
		h.mu.Lock()
		mp.waiters = slices.DeleteFunc(mp.waiters, func(x *statusWaiter) bool { return x == w })
		h.mu.Unlock()
		return job.PollResult{Err: rpc.Classify(ctx, ctx.Err())}
	}
}

// loop polls one minion while jobs are waited on there.
func (h *statusHub) loop(name string, mp *minionPoll) {
	for {
		h.mu.Lock()
		if len(mp.waiters) == 0 {
			delete(h.polls, name)
			h.mu.Unlock()
			return
		}
		var ids []string
		earliest := mp.waiters[0].until
		for _, w := range mp.waiters {
			if !slices.Contains(ids, w.jobID) && len(ids) < maxStatusJobs {
				ids = append(ids, w.jobID)
			}
			if w.until.Before(earliest) {
				earliest = w.until
			}
		}
		h.mu.Unlock()
		wait := min(max(time.Until(earliest), 0), job.PollWait)
		if len(ids) > maxWaitJobs {
			wait = 0
		}
		ctx, cancel := context.WithTimeout(context.Background(), job.RPCTimeout+wait)
		var reply rpc.StatusReply
		err := h.client.Call(ctx, name, "Minion.Status", rpc.StatusParams{JobIDs: ids, MaxOutput: -1, WaitMS: wait.Milliseconds()}, &reply)
		var se *status.Error
		if err != nil {
			se = rpc.Classify(ctx, err)
		}
		cancel()
		got := make(map[string]rpc.JobStatus, len(reply.Jobs))
		for _, js := range reply.Jobs {
			got[js.JobID] = js
		}
		now := time.Now()
		h.mu.Lock()
		mp.waiters = slices.DeleteFunc(mp.waiters, func(w *statusWaiter) bool {
			if !slices.Contains(ids, w.jobID) {
				return false // came during the call: the next round asks
			}
			if se != nil {
				w.ch <- job.PollResult{Err: se}
				return true
			}
			js, ok := got[w.jobID]
			if !ok {
				w.ch <- job.PollResult{Err: status.Errorf(status.KindInternal, "Minion.Status did not answer for job %s", w.jobID)}
				return true
			}
			if js.State != status.Finished && now.Before(w.until) {
				return false
			}
			w.ch <- job.PollResult{R: job.JobResult(js)}
			return true
		})
		h.mu.Unlock()
	}
}
