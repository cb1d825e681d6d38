package jobs

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/overlordhq/overlord/jobs/internal/kv"
	"github.com/overlordhq/overlord/status"
)

// maxProblems bounds what Check reports.
const maxProblems = 100

// Check reads the whole store in one read transaction and returns what
// is wrong with it: records that do not decode, a job's summary that
// disagrees with its entries, the index of open jobs out of step with the
// jobs, group members or last-seen times of minions not registered,
// inventory versions without their snapshot. No problems and a nil error:
// the store is sound. err is for a store that cannot be read at all (no
// store, a wrong schema version, unreachable).
func (s *Store) Check() (problems []string, err error) {
	err = s.view(func(tx kv.Tx) error {
		problems = checkTx(tx)
		return nil
	})
	return problems, err
}

func checkTx(tx kv.Tx) []string {
	var out []string
	bad := func(format string, args ...any) {
		if len(out) < maxProblems {
			out = append(out, fmt.Sprintf(format, args...))
		} else if len(out) == maxProblems {
			out = append(out, "... and more")
		}
	}
	decode := func(b kv.Bucket, what string, v any) {
		if b == nil {
			return
		}
		_ = b.ForEach(func(k, data []byte) error {
			if data == nil {
				bad("%s %q is a bucket, not a record", what, k)
				return nil
			}
			if err := json.Unmarshal(data, v); err != nil {
				bad("%s %q does not decode: %v", what, k, err)
			}
			return nil
		})
	}
	for _, name := range [][]byte{bucketMinions, bucketGroups, bucketJobs, bucketOpen} {
		if tx.Bucket(name) == nil {
			bad("the bucket %q is missing", name)
		}
	}
	minions := tx.Bucket(bucketMinions)
	registered := func(name []byte) bool { return minions != nil && minions.Get(name) != nil }
	decode(minions, "minion", &Minion{})
	if seen := tx.Bucket(bucketSeen); seen != nil {
		_ = seen.ForEach(func(k, v []byte) error {
			if !registered(k) {
				bad("seen: %q is not a registered minion", k)
			}
			return nil
		})
	}
	if g := tx.Bucket(bucketGroups); g != nil {
		_ = g.ForEach(func(k, v []byte) error {
			var members []string
			if err := json.Unmarshal(v, &members); err != nil {
				bad("group %q does not decode: %v", k, err)
				return nil
			}
			for _, m := range members {
				if !registered([]byte(m)) {
					bad("group %q: member %q is not a registered minion", k, m)
				}
			}
			return nil
		})
	}
	decode(tx.Bucket(bucketTokens), "token", &Token{})
	decode(tx.Bucket(bucketRequests), "certificate request", &CertRequest{})
	decode(tx.Bucket(bucketCerts), "certificate", &Cert{})
	decode(tx.Bucket(bucketGateways), "gateway", &Gateway{})
	decode(tx.Bucket(bucketModCache), "cached description", &Described{})
	if crl := tx.Bucket(bucketCRL); crl != nil && crl.Get(keyCRLNumber) != nil {
		if _, err := strconv.ParseInt(string(crl.Get(keyCRLNumber)), 10, 64); err != nil {
			bad("the revocation list's number %q is not a number", crl.Get(keyCRLNumber))
		}
	}
	if heads := tx.Bucket(bucketInventory); heads != nil {
		_ = heads.ForEach(func(k, _ []byte) error {
			if _, err := readInventory(tx, slices.Clone(k)); err != nil {
				bad("%v", err)
			}
			return nil
		})
	}
	jobs, open := tx.Bucket(bucketJobs), tx.Bucket(bucketOpen)
	if jobs == nil {
		return out
	}
	_ = jobs.ForEach(func(id, v []byte) error {
		jb := jobs.Bucket(id)
		if jb == nil {
			bad("job %s is a record, not a bucket", id)
			return nil
		}
		var rec Record
		if err := getJSON(jb, keyJob, &rec); err != nil {
			bad("job %s: its header: %v", id, err)
			return nil
		}
		if rec.ID != string(id) {
			bad("job %s: its header says job %s", id, rec.ID)
		}
		isOpen := open != nil && open.Get(id) != nil
		if finished := rec.State == status.Finished; finished && isOpen {
			bad("job %s is FINISHED but in the index of open jobs", id)
		} else if !finished && !isOpen && open != nil {
			bad("job %s is %s but not in the index of open jobs", id, rec.State)
		}
		eb := jb.Bucket(bucketMinions)
		if eb == nil {
			bad("job %s has no entries bucket", id)
			return nil
		}
		var sum status.Summary
		_ = eb.ForEach(func(m, data []byte) error {
			var r status.Result
			if err := json.Unmarshal(data, &r); err != nil {
				bad("job %s: the entry of %s does not decode: %v", id, m, err)
				return nil
			}
			sum.Add(r)
			return nil
		})
		if sum != rec.Summary {
			bad("job %s: its summary %+v disagrees with its entries (%+v)", id, rec.Summary, sum)
		}
		return nil
	})
	if open != nil {
		_ = open.ForEach(func(id, _ []byte) error {
			if jobs.Bucket(id) == nil {
				bad("the index of open jobs names job %s, which does not exist", id)
			}
			return nil
		})
	}
	return out
}
