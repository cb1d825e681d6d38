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
// (minion.MaxWaitJobs); with more waiting, a round makes several at once.
const maxWaitJobs = 100

// statusHub is the service's scheduler of status polls: however many jobs
// its drivers follow on a minion, it keeps at most one Minion.Status call
// to that minion in flight, a long poll carrying every job waited on, and
// hands each driver its job's state when the job finishes or the driver's
// wait ends. 200 jobs on 10 minions are 20 long polls (100 jobs per poll at
// most), not 2,000.
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

// loop polls one minion while jobs are waited on there: a round is one
// long poll per maxWaitJobs jobs, made at once, until the earliest wait
// ends or a job finishes.
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
			if !slices.Contains(ids, w.jobID) {
				ids = append(ids, w.jobID)
			}
			if w.until.Before(earliest) {
				earliest = w.until
			}
		}
		h.mu.Unlock()
		wait := min(max(time.Until(earliest), 0), job.PollWait)
		got, failed := h.round(name, ids, wait)
		now := time.Now()
		var alone []*statusWaiter // their answer did not carry their result: asked alone
		h.mu.Lock()
		mp.waiters = slices.DeleteFunc(mp.waiters, func(w *statusWaiter) bool {
			if !slices.Contains(ids, w.jobID) {
				return false // came during the round: the next one asks
			}
			if se := failed[w.jobID]; se != nil {
				w.ch <- job.PollResult{Err: se}
				return true
			}
			js, ok := got[w.jobID]
			switch {
			case !ok:
				w.ch <- job.PollResult{Err: status.Errorf(status.KindInternal, "Minion.Status did not answer for job %s", w.jobID)}
			case js.State != status.Finished && now.Before(w.until):
				return false
			case js.State == status.Finished && js.Truncated:
				// The reply's size limit left this result out: a
				// driver asking for its job alone gets it whole.
				alone = append(alone, w)
			default:
				w.ch <- job.PollResult{R: job.JobResult(js)}
			}
			return true
		})
		h.mu.Unlock()
		for _, w := range alone {
			ctx, cancel := context.WithTimeout(context.Background(), job.RPCTimeout)
			w.ch <- job.MinionStatus(ctx, h.client, name, w.jobID, 0)
			cancel()
		}
	}
}

// round asks a minion for the state of jobs ids, in long polls of at most
// maxWaitJobs jobs made at once, each held up to wait; it returns each
// job's status, or why it could not be had.
func (h *statusHub) round(name string, ids []string, wait time.Duration) (map[string]rpc.JobStatus, map[string]*status.Error) {
	got := make(map[string]rpc.JobStatus, len(ids))
	failed := map[string]*status.Error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for chunk := range slices.Chunk(ids, maxWaitJobs) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), job.RPCTimeout+wait)
			defer cancel()
			var reply rpc.StatusReply
			err := h.client.Call(ctx, name, "Minion.Status", rpc.StatusParams{JobIDs: chunk, MaxOutput: -1, WaitMS: wait.Milliseconds()}, &reply)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				se := rpc.Classify(ctx, err)
				for _, id := range chunk {
					failed[id] = se
				}
				return
			}
			for _, js := range reply.Jobs {
				got[js.JobID] = js
			}
		}()
	}
	wg.Wait()
	return got, failed
}
