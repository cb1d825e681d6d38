package jobs

import (
	"bytes"
	"encoding/json"

	"github.com/overlordhq/overlord/jobs/internal/kv"

	"github.com/overlordhq/overlord/status"
)

// Census is what the overlord service's metrics read of overlord.db at a
// scrape: how many jobs are in each state, how many entries wait for their
// minion to come back (--queue), and the registered minions' names.
type Census struct {
	Jobs    map[status.State]int // RUNNING, PARTIAL and FINISHED, each present
	Queued  int                  // entries of open jobs that are Queued
	Minions []string             // the registry's names, sorted
}

// queuedKey is in the JSON of a queued entry, and of no other field's
// name: an entry without it is not decoded.
var queuedKey = []byte(`"queued_since"`)

// Census counts the jobs by state, the queued entries and the registered
// minions in one read transaction. It decodes only the open jobs'
// headers (the index of open jobs) and the entries that may be queued:
// FINISHED is every job less the open ones, a walk of the keys.
func (s *Store) Census() (Census, error) {
	c := Census{Jobs: map[status.State]int{status.Running: 0, status.Partial: 0, status.Finished: 0}}
	err := s.view(func(tx kv.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		all := 0
		cur := jobs.Cursor()
		for k, _ := cur.First(); k != nil; k, _ = cur.Next() {
			all++
		}
		open := 0
		if ob := tx.Bucket(bucketOpen); ob != nil {
			err := ob.ForEach(func(k, _ []byte) error {
				jb := jobs.Bucket(k)
				if jb == nil {
					return nil
				}
				var st struct {
					State status.State `json:"state"`
				}
				if err := getJSON(jb, keyJob, &st); err != nil {
					return err
				}
				if st.State == status.Finished {
					return nil // the index lags behind: counted as FINISHED
				}
				if st.State != status.Partial {
					st.State = status.Running
				}
				open++
				c.Jobs[st.State]++
				eb := jb.Bucket(bucketMinions)
				if eb == nil {
					return nil
				}
				return eb.ForEach(func(_, v []byte) error {
					if !bytes.Contains(v, queuedKey) {
						return nil
					}
					var r status.Result
					if json.Unmarshal(v, &r) == nil && r.Queued() {
						c.Queued++
					}
					return nil
				})
			})
			if err != nil {
				return err
			}
		}
		c.Jobs[status.Finished] = all - open
		return tx.Bucket(bucketMinions).ForEach(func(k, _ []byte) error {
			c.Minions = append(c.Minions, string(k))
			return nil
		})
	})
	return c, err
}

// DescribesMethod reports whether a minion's cached description of its
// plugins ('overlord modules') has module.method.
func (s *Store) DescribesMethod(module, method string) (bool, error) {
	found := false
	err := s.view(func(tx kv.Tx) error {
		b := tx.Bucket(bucketModCache)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			if found || !bytes.Contains(v, []byte(method)) {
				return nil
			}
			var d struct {
				Modules []struct {
					Name    string `json:"name"`
					Methods []struct {
						Name string `json:"name"`
					} `json:"methods"`
				} `json:"modules"`
			}
			if json.Unmarshal(v, &d) != nil {
				return nil
			}
			for _, mod := range d.Modules {
				if mod.Name != module {
					continue
				}
				for _, m := range mod.Methods {
					if m.Name == method {
						found = true
					}
				}
			}
			return nil
		})
	})
	return found, err
}
