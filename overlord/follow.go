package overlord

import (
	"context"
	"sort"
	"strings"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/job"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// followChunk is how much output one Minion.Status call asks for; a reply
// this full means there is more to read at once.
const followChunk = 256 << 10

// maxFollowReads bounds the calls per minion in one Read.
const maxFollowReads = 64

// Follower reads the output of a job's running minion jobs as it grows,
// line by line.
type Follower struct {
	client  *rpc.Client
	forks   int
	offsets map[string]int64
	partial map[string]string // a last line not yet ended, per minion
	// drained: minions whose entry was FINISHED when a Read got to the
	// end of their output; they have no more to read.
	drained map[string]bool
}

// Follower returns a Follower for job rec's minions, with the identity
// the job was submitted with (minions show each caller only its jobs).
func (o *Overlord) Follower(rec jobs.Record) (*Follower, error) {
	inv, err := o.Store.Inventory()
	if err != nil {
		return nil, err
	}
	as := *o
	if rec.Async {
		as.IdentityFile = rec.Identity
	}
	forks := max(rec.Forks, fanout.DefaultForks)
	client, err := as.Client(inv.Minions, forks, DefaultConnectTimeout)
	if err != nil {
		return nil, err
	}
	return &Follower{client: client, forks: forks, offsets: map[string]int64{}, partial: map[string]string{}, drained: map[string]bool{}}, nil
}

// Close releases the follower's connections.
func (f *Follower) Close() { f.client.Close() }

// Read asks each minion with a submitted entry for the output its job
// produced since the last Read, all of it, and passes the complete new
// lines to emit, minion by minion in name order. Minions out of reach are
// skipped this round.
func (f *Follower) Read(ctx context.Context, entries map[string]status.Result, emit func(minion, lines string)) {
	var names []string
	for n, e := range entries {
		if e.MinionJobID != "" && !f.drained[n] {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	type target struct {
		jobID  string
		offset int64
	}
	targets := make(map[string]target, len(names)) // read-only for the workers
	for _, n := range names {
		targets[n] = target{entries[n].MinionJobID, f.offsets[n]}
	}
	type got struct {
		out  string
		next int64
		end  bool // the minion said there is no more output now
	}
	read := map[string]got{}
	fanout.Run(ctx, names, f.forks, func(ctx context.Context, name string) got {
		t := targets[name]
		var b strings.Builder
		off := t.offset
		for range maxFollowReads {
			cctx, cancel := context.WithTimeout(ctx, job.RPCTimeout)
			var reply rpc.StatusReply
			params := rpc.StatusParams{JobIDs: []string{t.jobID}, FromOffset: off, MaxOutput: followChunk}
			err := f.client.Call(cctx, name, "Minion.Status", params, &reply)
			cancel()
			if err != nil || len(reply.Jobs) != 1 {
				break
			}
			b.WriteString(reply.Jobs[0].Output)
			off = reply.Jobs[0].NextOffset
			if len(reply.Jobs[0].Output) < followChunk {
				return got{b.String(), off, true}
			}
		}
		return got{b.String(), off, false}
	}, func(name string, g got) {
		if g.out != "" {
			read[name] = g
			f.offsets[name] = g.next
		}
		if g.end && entries[name].State == status.Finished {
			f.drained[name] = true
		}
	})
	for _, n := range names {
		g, ok := read[n]
		if !ok {
			continue
		}
		text := f.partial[n] + g.out
		cut := strings.LastIndexByte(text, '\n') + 1
		f.partial[n] = text[cut:]
		if cut > 0 {
			emit(n, text[:cut])
		}
	}
}

// Flush passes on the last lines that had no newline, once the job is done.
func (f *Follower) Flush(emit func(minion, lines string)) {
	names := make([]string, 0, len(f.partial))
	for n, p := range f.partial {
		if p != "" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		emit(n, f.partial[n]+"\n")
		f.partial[n] = ""
	}
}
