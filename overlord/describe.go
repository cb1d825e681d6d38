package overlord

import (
	"context"
	"time"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/modules"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// Description is one minion's answer to Minion.Describe.
type Description struct {
	Reply *rpc.DescribeReply
	Err   *status.Error
}

// Describe asks every minion a target matches for its modules, with
// their methods and typed parameters. It records no job; what each
// minion said of its plugins is cached in overlord.db, where Prepare
// finds it to type a plugin's arguments.
func (o *Overlord) Describe(ctx context.Context, target string, forks int, timeout time.Duration) (map[string]Description, error) {
	p, err := o.Prepare(CallSpec{Target: target, Module: "system", Method: "list_modules"})
	if err != nil {
		return nil, err
	}
	client, err := o.Client(p.Minions, forks, DefaultConnectTimeout)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	out := make(map[string]Description, len(p.Minions))
	fanout.Run(ctx, p.Names(), forks, func(ctx context.Context, name string) Description {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		var reply rpc.DescribeReply
		if err := client.Call(cctx, name, "Minion.Describe", rpc.DescribeParams{}, &reply); err != nil {
			return Description{Err: rpc.Classify(cctx, err)}
		}
		return Description{Reply: &reply}
	}, func(name string, d Description) { out[name] = d })
	o.cacheModules(p.Minions, out)
	return out, nil
}

// cacheModules records the plugins of the minions that answered. Failing
// to is a warning: the description was given all the same.
func (o *Overlord) cacheModules(minions []jobs.Minion, descs map[string]Description) {
	cache := map[string]jobs.Described{}
	now := time.Now().UTC()
	for _, m := range minions {
		d, ok := descs[m.Name]
		if !ok || d.Reply == nil {
			continue
		}
		c := jobs.Described{Fingerprint: m.Fingerprint, Version: d.Reply.Version, At: now, Modules: []modules.ModuleInfo{}}
		for _, mod := range d.Reply.Modules {
			if mod.Plugin && mod.Error == "" {
				c.Modules = append(c.Modules, mod)
			}
		}
		cache[m.Name] = c
	}
	if err := o.Store.CacheModules(cache); err != nil {
		o.Logger.Warn("could not cache the minions' plugin descriptions", "err", err)
	}
}
