package overlord

import (
	"context"
	"sort"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// Follower reads the output of a job's running minion jobs as it grows.
type Follower struct {
	client  *rpc.Client
	forks   int
	offsets map[string]int64
}

// Follower returns a Follower for a job's minions.
func (o *Overlord) Follower(forks int) (*Follower, error) {
	inv, err := o.Store.Inventory()
	if err != nil {
		return nil, err
	}
	client, err := o.Client(inv.Minions, forks, DefaultConnectTimeout)
	if err != nil {
		return nil, err
	}
	return &Follower{client: client, forks: forks, offsets: map[string]int64{}}, nil
}

// Close releases the follower's connections.
func (f *Follower) Close() { f.client.Close() }

// Read asks each minion with a submitted entry for the output its job
// produced since the last Read, and passes new output to emit, minion by
// minion in name order. Minions out of reach are skipped this round.
func (f *Follower) Read(ctx context.Context, entries map[string]status.Result, emit func(minion, output string)) {
	var names []string
	for n, e := range entries {
		if e.MinionJobID != "" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	got := map[string]string{}
	fanout.Run(ctx, names, f.forks, func(ctx context.Context, name string) *rpc.JobStatus {
		cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		defer cancel()
		var reply rpc.StatusReply
		params := rpc.StatusParams{JobIDs: []string{entries[name].MinionJobID}, FromOffset: f.offsets[name]}
		if err := f.client.Call(cctx, name, "Minion.Status", params, &reply); err != nil || len(reply.Jobs) != 1 {
			return nil
		}
		return &reply.Jobs[0]
	}, func(name string, js *rpc.JobStatus) {
		if js != nil && js.Output != "" {
			got[name] = js.Output
			f.offsets[name] = js.NextOffset
		}
	})
	for _, n := range names {
		if out, ok := got[n]; ok {
			emit(n, out)
		}
	}
}
