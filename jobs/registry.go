package jobs

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/overlordhq/overlord/jobs/internal/kv"
)

// Minion is a registered minion.
type Minion struct {
	Name        string         `json:"name"`
	Addr        string         `json:"addr"`
	Fingerprint string         `json:"fingerprint"` // SHA-256 of the certificate issued to it
	AddedAt     time.Time      `json:"added_at"`
	LastSeen    *time.Time     `json:"last_seen,omitempty"`
	Facts       map[string]any `json:"facts,omitempty"`
	// Via names the gateways that reach the minion, the first preferred;
	// empty: the overlord reaches it directly.
	Via []string `json:"via,omitempty"`
}

// AddMinion registers m; ErrExists if the name is taken.
func (s *Store) AddMinion(m Minion) error {
	return s.update(func(tx kv.Tx) error {
		b := tx.Bucket(bucketMinions)
		if b.Get([]byte(m.Name)) != nil {
			return fmt.Errorf("minion %s: %w", m.Name, ErrExists)
		}
		if gw := tx.Bucket(bucketGateways); gw != nil && gw.Get([]byte(m.Name)) != nil {
			return fmt.Errorf("%s is a gateway's name: %w", m.Name, ErrExists)
		}
		if err := checkVia(tx, m.Via); err != nil {
			return err
		}
		return putJSON(b, []byte(m.Name), m)
	})
}

// RemoveMinion unregisters a minion and drops it from every group.
func (s *Store) RemoveMinion(name string) error {
	return s.update(func(tx kv.Tx) error {
		if tx.Bucket(bucketMinions).Get([]byte(name)) == nil {
			return fmt.Errorf("minion %s: %w", name, ErrNotFound)
		}
		return removeMinion(tx, name)
	})
}

// removeMinion deletes a minion's registry entry, when it was last seen
// and its group memberships, in tx.
func removeMinion(tx kv.Tx, name string) error {
	if err := tx.Bucket(bucketMinions).Delete([]byte(name)); err != nil {
		return err
	}
	if seen := tx.Bucket(bucketSeen); seen != nil {
		if err := seen.Delete([]byte(name)); err != nil {
			return err
		}
	}
	g := tx.Bucket(bucketGroups)
	return g.ForEach(func(k, v []byte) error {
		var members []string
		if err := getJSON(g, k, &members); err != nil {
			return err
		}
		if i := slices.Index(members, name); i >= 0 {
			return putJSON(g, k, slices.Delete(members, i, i+1))
		}
		return nil
	})
}

// Minions returns every registered minion, sorted by name.
func (s *Store) Minions() ([]Minion, error) {
	var out []Minion
	err := s.view(func(tx kv.Tx) error {
		return tx.Bucket(bucketMinions).ForEach(func(k, _ []byte) error {
			m, err := readMinion(tx, k)
			if err != nil {
				return err
			}
			out = append(out, m)
			return nil
		})
	})
	return out, err
}

// Inventory is the registry as one consistent snapshot: the minions and
// the groups, read in one transaction.
type Inventory struct {
	Minions  []Minion
	Groups   map[string][]string
	Gateways []Gateway
}

// Inventory reads the registry.
func (s *Store) Inventory() (*Inventory, error) {
	inv := &Inventory{Groups: map[string][]string{}}
	err := s.view(func(tx kv.Tx) error {
		if err := tx.Bucket(bucketMinions).ForEach(func(k, _ []byte) error {
			m, err := readMinion(tx, k)
			if err != nil {
				return err
			}
			inv.Minions = append(inv.Minions, m)
			return nil
		}); err != nil {
			return err
		}
		var err error
		if inv.Gateways, err = readGateways(tx); err != nil {
			return err
		}
		g := tx.Bucket(bucketGroups)
		return g.ForEach(func(k, _ []byte) error {
			var members []string
			if err := getJSON(g, k, &members); err != nil {
				return err
			}
			inv.Groups[string(k)] = members
			return nil
		})
	})
	return inv, err
}

// TouchMinions sets LastSeen for the named minions, skipping names no
// longer registered.
func (s *Store) TouchMinions(names []string, at time.Time) error {
	if len(names) == 0 {
		return nil
	}
	return s.update(func(tx kv.Tx) error {
		return touch(tx, names, at)
	})
}

// touch records when minions last answered. The times live in a bucket
// of their own, so that a batch of results costs one small Put per
// minion rather than rewriting each minion's whole record.
func touch(tx kv.Tx, names []string, at time.Time) error {
	seen, err := tx.CreateBucketIfNotExists(bucketSeen)
	if err != nil {
		return err
	}
	minions := tx.Bucket(bucketMinions)
	stamp := []byte(at.UTC().Format(time.RFC3339Nano))
	for _, n := range names {
		key := []byte(n)
		if minions.Get(key) == nil {
			continue // removed since
		}
		if err := seen.Put(key, stamp); err != nil {
			return err
		}
	}
	return nil
}

// readMinion decodes a registry record and adds when it was last seen.
func readMinion(tx kv.Tx, name []byte) (Minion, error) {
	var m Minion
	if err := getJSON(tx.Bucket(bucketMinions), name, &m); err != nil {
		return m, err
	}
	if seen := tx.Bucket(bucketSeen); seen != nil {
		if t, err := time.Parse(time.RFC3339Nano, string(seen.Get(name))); err == nil {
			m.LastSeen = &t
		}
	}
	return m, nil
}

// AddToGroup adds members to group, creating the group if needed. Every
// member must be a registered minion.
func (s *Store) AddToGroup(group string, members []string) error {
	return s.update(func(tx kv.Tx) error {
		mb := tx.Bucket(bucketMinions)
		for _, m := range members {
			if mb.Get([]byte(m)) == nil {
				return fmt.Errorf("minion %s: %w", m, ErrNotFound)
			}
		}
		g := tx.Bucket(bucketGroups)
		var cur []string
		if g.Get([]byte(group)) != nil {
			if err := getJSON(g, []byte(group), &cur); err != nil {
				return err
			}
		}
		for _, m := range members {
			if !slices.Contains(cur, m) {
				cur = append(cur, m)
			}
		}
		sort.Strings(cur)
		return putJSON(g, []byte(group), cur)
	})
}

// RemoveGroup deletes a group, or with members only those members.
func (s *Store) RemoveGroup(group string, members []string) error {
	return s.update(func(tx kv.Tx) error {
		g := tx.Bucket(bucketGroups)
		var cur []string
		if err := getJSON(g, []byte(group), &cur); err != nil {
			return fmt.Errorf("group %s: %w", group, err)
		}
		if len(members) == 0 {
			return g.Delete([]byte(group))
		}
		for _, m := range members {
			i := slices.Index(cur, m)
			if i < 0 {
				return fmt.Errorf("group %s has no member %s: %w", group, m, ErrNotFound)
			}
			cur = slices.Delete(cur, i, i+1)
		}
		return putJSON(g, []byte(group), cur)
	})
}

// CacheFacts sets the cached facts of each named minion (read by
// --where), in one transaction. A name no longer registered is skipped.
func (s *Store) CacheFacts(facts map[string]map[string]any) error {
	return s.update(func(tx kv.Tx) error {
		b := tx.Bucket(bucketMinions)
		for name, f := range facts {
			var m Minion
			if err := getJSON(b, []byte(name), &m); err != nil {
				continue // removed since
			}
			m.Facts = f
			if err := putJSON(b, []byte(name), m); err != nil {
				return err
			}
		}
		return nil
	})
}
