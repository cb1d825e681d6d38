// Package jobid makes job IDs: UUIDv7, so that IDs sort by creation time.
// It is its own package so that the minion, which names its jobs too,
// does not link the overlord's store (and its etcd client).
package jobid

import "github.com/google/uuid"

// New returns a new job ID.
func New() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	return id.String(), nil
}
