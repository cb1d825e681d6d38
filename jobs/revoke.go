package jobs

import (
	"fmt"
	"strconv"
	"time"

	"github.com/overlordhq/overlord/jobs/internal/kv"
)

// A CRLMaker signs a revocation list numbered number that lists revoked
// (every recorded certificate that is revoked and not yet expired) and
// returns its DER. It is called inside the write transaction that records
// the revocation, so numbers never repeat and the stored list always
// matches the recorded revocations.
type CRLMaker func(number int64, revoked []Cert) ([]byte, error)

// Revoke marks the recorded certificates with the given serial numbers
// revoked at now, and stores a new revocation list made by makeCRL, in one
// transaction. A minion whose registry entry pins one of them is dropped
// from the registry and from every group; a certificate request whose
// certificate it was is marked revoked. Serials already revoked are
// skipped; an unknown serial is ErrNotFound. It returns the certificates
// it revoked and the new list's number.
func (s *Store) Revoke(serials []string, now time.Time, makeCRL CRLMaker) ([]Cert, int64, error) {
	var (
		revoked []Cert
		number  int64
	)
	err := s.update(func(tx kv.Tx) error {
		revoked, number = nil, 0 // fn may run twice (see update)
		certsB, err := tx.CreateBucketIfNotExists(bucketCerts)
		if err != nil {
			return err
		}
		at := now.UTC()
		for _, serial := range serials {
			var c Cert
			if err := getJSON(certsB, []byte(serial), &c); err != nil {
				return fmt.Errorf("certificate serial %s: %w", serial, err)
			}
			if c.RevokedAt != nil {
				continue
			}
			c.RevokedAt = &at
			if err := putJSON(certsB, []byte(serial), c); err != nil {
				return err
			}
			if err := dropRevoked(tx, c); err != nil {
				return err
			}
			revoked = append(revoked, c)
		}
		if len(revoked) == 0 {
			number, _, err = readCRL(tx)
			return err
		}
		var list []Cert
		if err := certsB.ForEach(func(k, _ []byte) error {
			var c Cert
			if err := getJSON(certsB, k, &c); err != nil {
				return err
			}
			if c.RevokedAt != nil && c.NotAfter.After(now) {
				list = append(list, c)
			}
			return nil
		}); err != nil {
			return err
		}
		prev, _, err := readCRL(tx)
		if err != nil {
			return err
		}
		number = prev + 1
		der, err := makeCRL(number, list)
		if err != nil {
			return err
		}
		crl, err := tx.CreateBucketIfNotExists(bucketCRL)
		if err != nil {
			return err
		}
		if err := crl.Put(keyCRLNumber, []byte(strconv.FormatInt(number, 10))); err != nil {
			return err
		}
		return crl.Put(keyCRLDER, der)
	})
	if err != nil {
		return nil, 0, err
	}
	return revoked, number, nil
}

// dropRevoked unregisters the minion whose pinned certificate c is, and
// marks the request it was issued for revoked.
func dropRevoked(tx kv.Tx, c Cert) error {
	minions := tx.Bucket(bucketMinions)
	var m Minion
	if minions.Get([]byte(c.Name)) != nil {
		if err := getJSON(minions, []byte(c.Name), &m); err != nil {
			return err
		}
		if m.Fingerprint == c.Fingerprint {
			if err := removeMinion(tx, c.Name); err != nil {
				return err
			}
		}
	}
	reqs := tx.Bucket(bucketRequests)
	if reqs == nil || reqs.Get([]byte(c.Name)) == nil {
		return nil
	}
	var r CertRequest
	if err := getJSON(reqs, []byte(c.Name), &r); err != nil {
		return err
	}
	if r.Serial != c.Serial {
		return nil
	}
	r.State = StateRevoked
	return putJSON(reqs, []byte(c.Name), r)
}

func readCRL(tx kv.Tx) (int64, []byte, error) {
	b := tx.Bucket(bucketCRL)
	if b == nil || b.Get(keyCRLNumber) == nil {
		return 0, nil, nil
	}
	n, err := strconv.ParseInt(string(b.Get(keyCRLNumber)), 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("overlord.db has a bad CRL number %q", b.Get(keyCRLNumber))
	}
	return n, append([]byte(nil), b.Get(keyCRLDER)...), nil
}

// CRL returns the current revocation list's number and DER; 0 and nil if
// nothing was ever revoked.
func (s *Store) CRL() (int64, []byte, error) {
	var (
		n   int64
		der []byte
	)
	err := s.view(func(tx kv.Tx) error {
		var err error
		n, der, err = readCRL(tx)
		return err
	})
	return n, der, err
}
