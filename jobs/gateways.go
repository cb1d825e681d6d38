package jobs

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/overlordhq/overlord/jobs/internal/kv"
)

var bucketGateways = []byte("gateways")

// Gateway is a registered gateway: an `overlord serve` on another machine
// that reaches the minions whose Via names it.
type Gateway struct {
	Name        string    `json:"name"`
	Addr        string    `json:"addr"`        // its API's host:port
	Fingerprint string    `json:"fingerprint"` // SHA-256 of the certificate issued to it
	Serial      string    `json:"serial,omitempty"`
	AddedAt     time.Time `json:"added_at"`
}

// RemoveGateway unregisters a gateway. Minions it reaches keep their other
// gateways; unless force, a minion it is the only gateway of is an error
// (the minion would be called directly, which it may not be reachable by).
func (s *Store) RemoveGateway(name string, force bool) error {
	return s.update(func(tx kv.Tx) error {
		b := tx.Bucket(bucketGateways)
		if b == nil || b.Get([]byte(name)) == nil {
			return fmt.Errorf("gateway %s: %w", name, ErrNotFound)
		}
		mb := tx.Bucket(bucketMinions)
		var only []string
		type change struct {
			key []byte
			m   Minion
		}
		var changes []change
		if err := mb.ForEach(func(k, _ []byte) error {
			var m Minion
			if err := getJSON(mb, k, &m); err != nil {
				return err
			}
			i := slices.Index(m.Via, name)
			if i < 0 {
				return nil
			}
			if len(m.Via) == 1 {
				only = append(only, m.Name)
			}
			m.Via = slices.Delete(slices.Clone(m.Via), i, i+1)
			changes = append(changes, change{slices.Clone(k), m})
			return nil
		}); err != nil {
			return err
		}
		if len(only) > 0 && !force {
			if len(only) > 5 {
				only = append(only[:5], fmt.Sprintf("and %d more", len(only)-5))
			}
			return fmt.Errorf("gateway %s is the only gateway of %s: %w", name, strings.Join(only, ", "), ErrInUse)
		}
		for _, c := range changes {
			if err := putJSON(mb, c.key, c.m); err != nil {
				return err
			}
		}
		return b.Delete([]byte(name))
	})
}

// ErrInUse is returned when removing something others still depend on.
var ErrInUse = fmt.Errorf("in use")

// Gateways returns every registered gateway, sorted by name.
func (s *Store) Gateways() ([]Gateway, error) {
	var out []Gateway
	err := s.view(func(tx kv.Tx) error {
		var err error
		out, err = readGateways(tx)
		return err
	})
	return out, err
}

func readGateways(tx kv.Tx) ([]Gateway, error) {
	b := tx.Bucket(bucketGateways)
	if b == nil {
		return nil, nil
	}
	var out []Gateway
	err := b.ForEach(func(k, _ []byte) error {
		var g Gateway
		if err := getJSON(b, k, &g); err != nil {
			return err
		}
		out = append(out, g)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// checkVia returns an error unless every name in via is a registered
// gateway, named once.
func checkVia(tx kv.Tx, via []string) error {
	b := tx.Bucket(bucketGateways)
	for i, g := range via {
		if slices.Contains(via[:i], g) {
			return fmt.Errorf("gateway %s is named twice", g)
		}
		if b == nil || b.Get([]byte(g)) == nil {
			return fmt.Errorf("gateway %s: %w (see 'overlord gateway list')", g, ErrNotFound)
		}
	}
	return nil
}

// SetVia sets the gateways that reach a registered minion (none: it is
// reached directly).
func (s *Store) SetVia(name string, via []string) error {
	return s.update(func(tx kv.Tx) error {
		mb := tx.Bucket(bucketMinions)
		var m Minion
		if mb.Get([]byte(name)) == nil {
			return fmt.Errorf("minion %s: %w", name, ErrNotFound)
		}
		if err := getJSON(mb, []byte(name), &m); err != nil {
			return err
		}
		if err := checkVia(tx, via); err != nil {
			return err
		}
		m.Via = via
		return putJSON(mb, []byte(name), m)
	})
}

// AddGatewayCert registers g and records its certificate c, in one
// transaction.
func (s *Store) AddGatewayCert(g Gateway, c Cert) error {
	return s.update(func(tx kv.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketGateways)
		if err != nil {
			return err
		}
		if b.Get([]byte(g.Name)) != nil {
			return fmt.Errorf("gateway %s: %w", g.Name, ErrExists)
		}
		if tx.Bucket(bucketMinions).Get([]byte(g.Name)) != nil {
			return fmt.Errorf("%s is a minion's name: %w", g.Name, ErrExists)
		}
		if err := putCert(tx, c); err != nil {
			return err
		}
		return putJSON(b, []byte(g.Name), g)
	})
}
