package overlord

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/rpc"
)

// router returns how a client reaches minions behind gateways: for each
// minion with Via, its gateways as the registry has them; nil if none of
// minions has gateways.
func (o *Overlord) router(minions []jobs.Minion) (func(string) []rpc.Gateway, error) {
	via := map[string][]string{}
	for _, m := range minions {
		if len(m.Via) > 0 {
			via[m.Name] = m.Via
		}
	}
	if len(via) == 0 {
		return nil, nil
	}
	gws, err := o.Store.Gateways()
	if err != nil {
		return nil, err
	}
	return routeBy(via, gws), nil
}

// routeBy maps each minion's gateway names to the gateways; a name no
// longer registered is left out (a minion whose every gateway is gone is
// reached through none: the call fails, naming them).
func routeBy(via map[string][]string, gws []jobs.Gateway) func(string) []rpc.Gateway {
	byName := make(map[string]rpc.Gateway, len(gws))
	for _, g := range gws {
		byName[g.Name] = rpc.Gateway{Name: g.Name, Addr: g.Addr, Fingerprint: g.Fingerprint}
	}
	return func(minion string) []rpc.Gateway {
		names := via[minion]
		out := make([]rpc.Gateway, 0, len(names))
		for _, n := range names {
			if g, ok := byName[n]; ok {
				out = append(out, g)
			} else {
				out = append(out, rpc.Gateway{Name: n})
			}
		}
		return out
	}
}

// AddGateway registers a gateway at addr (its API's HOST:PORT), issues its
// certificate (gateway role) and writes its bundle to bundleOut, for
// 'overlord gateway init' on its machine. Nothing is registered if any
// step fails.
func (o *Overlord) AddGateway(name, addr, bundleOut string, kt certs.KeyType) (jobs.Gateway, error) {
	if err := certs.CheckName(name); err != nil {
		return jobs.Gateway{}, err
	}
	if err := CheckAddr(addr); err != nil {
		return jobs.Gateway{}, err
	}
	if _, err := os.Stat(bundleOut); err == nil {
		return jobs.Gateway{}, fmt.Errorf("%s already exists; not overwriting it", bundleOut)
	}
	ca, err := o.Authority()
	if err != nil {
		return jobs.Gateway{}, err
	}
	cert, key, err := ca.Issue(name, certs.RoleGateway, kt)
	if err != nil {
		return jobs.Gateway{}, err
	}
	g := jobs.Gateway{Name: name, Addr: addr, Fingerprint: certs.Fingerprint(cert), Serial: certs.Serial(cert), AddedAt: time.Now().UTC()}
	if err := o.Store.AddGatewayCert(g, certRecord(cert, SourceGatewayAdd, g.AddedAt)); err != nil {
		return jobs.Gateway{}, err
	}
	if err := writeBundle(&certs.Bundle{Cert: cert, Key: key, CA: ca.Cert}, bundleOut); err != nil {
		if rmErr := o.Store.RemoveGateway(name, true); rmErr != nil {
			err = errors.Join(err, rmErr)
		}
		return jobs.Gateway{}, err
	}
	return g, nil
}
