package jobs

import (
	"encoding/json"
	"time"

	"github.com/overlordhq/overlord/jobs/internal/kv"

	"github.com/overlordhq/overlord/modules"
)

// bucketModCache holds what minions last said of their plugins:
// minion name -> JSON Described. Stores made before it read as if it were
// empty; the first CacheModules creates it.
var bucketModCache = []byte("modcache")

// MaxDescribed bounds the JSON of one minion's cached description; a
// larger one is not cached (the minion's plugins are then typed as if
// never described).
const MaxDescribed = 1 << 20

// Described is a minion's description of its plugins, as cached by
// 'overlord modules' for typing the arguments of later calls.
type Described struct {
	// Fingerprint is the minion's certificate fingerprint when it
	// answered: a minion registered again under the same name is another
	// minion, and its cache is not used.
	Fingerprint string               `json:"fingerprint"`
	Version     string               `json:"version"` // the minion's version
	At          time.Time            `json:"at"`
	Modules     []modules.ModuleInfo `json:"modules"` // its plugins, broken ones left out
}

// CacheModules records each minion's description, replacing what was
// cached of it. A description over MaxDescribed drops what was cached.
func (s *Store) CacheModules(descs map[string]Described) error {
	if len(descs) == 0 {
		return nil
	}
	return s.update(func(tx kv.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketModCache)
		if err != nil {
			return err
		}
		for name, d := range descs {
			data, err := json.Marshal(d)
			if err != nil {
				return err
			}
			if len(data) > MaxDescribed {
				if err := b.Delete([]byte(name)); err != nil {
					return err
				}
				continue
			}
			if err := b.Put([]byte(name), data); err != nil {
				return err
			}
		}
		return nil
	})
}

// CachedModules returns the cached descriptions of the named minions that
// have one. An entry that does not decode is left out.
func (s *Store) CachedModules(names []string) (map[string]Described, error) {
	out := map[string]Described{}
	err := s.view(func(tx kv.Tx) error {
		b := tx.Bucket(bucketModCache)
		if b == nil {
			return nil
		}
		for _, n := range names {
			data := b.Get([]byte(n))
			if data == nil {
				continue
			}
			var d Described
			if json.Unmarshal(data, &d) == nil {
				out[n] = d
			}
		}
		return nil
	})
	return out, err
}
