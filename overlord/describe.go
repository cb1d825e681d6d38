package overlord

import (
	"context"
	"time"

	"github.com/overlordhq/overlord/fanout"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// Description is one minion's answer to Minion.Describe.
type Description struct {
	Reply *rpc.DescribeReply
	Err   *status.Error
}

// Describe asks every minion a target matches for its modules, with
// their methods and typed parameters. It records no job: it changes
// nothing anywhere.
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
	return out, nil
}
