package jobs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/overlordhq/overlord/jobs/internal/kv"
)

// ErrNotEmpty is returned by Copy for a destination that holds data.
var ErrNotEmpty = errors.New("the destination is not empty")

// CopyStats says what Copy copied.
type CopyStats struct {
	Buckets, Keys int
	Bytes         int64
	Jobs          int
}

// Copy copies every bucket and key of src into dst (overlord store
// migrate), read from src in one read transaction and written to dst in
// transactions of at most 100 keys and 1 MiB, which fit etcd's default
// limits. The meta bucket (the schema version) is written last, so that a
// copy cut short is no store (every command says so) until Copy is run
// again with replace. A dst that holds anything is ErrNotEmpty, unless
// replace: then what it holds is deleted first.
func Copy(dst, src *Store, replace bool) (CopyStats, error) {
	var st CopyStats
	if dst.Address() == src.Address() {
		return st, fmt.Errorf("the source and the destination are the same store (%s)", src.Address())
	}
	empty, err := dst.empty()
	if err != nil {
		return st, err
	}
	if !empty {
		if !replace {
			return st, fmt.Errorf("%s: %w (use --force to replace what it holds)", dst.describe(), ErrNotEmpty)
		}
		if err := dst.wipe(); err != nil {
			return st, err
		}
	}
	maxKeys, maxBytes := 100, 1<<20
	if dst.etcd == nil {
		maxKeys, maxBytes = 50000, 64<<20 // bbolt: one sync per transaction
	}
	w := &copier{dst: dst, maxKeys: maxKeys, maxBytes: maxBytes, st: &st}
	err = src.view(func(tx kv.Tx) error {
		var meta kv.Bucket
		err := tx.ForEach(func(name []byte, b kv.Bucket) error {
			if bytes.Equal(name, bucketMeta) {
				meta = b
				return nil
			}
			return w.bucket(nil, name, b)
		})
		if err != nil {
			return err
		}
		if jb := tx.Bucket(bucketJobs); jb != nil {
			_ = jb.ForEachBucket(func([]byte) error { st.Jobs++; return nil })
		}
		if err := w.flush(); err != nil {
			return err
		}
		if meta == nil {
			return errors.New("the source has no meta bucket")
		}
		return w.bucket(nil, bucketMeta, meta)
	})
	if err == nil {
		err = w.flush()
	}
	return st, err
}

type copyItem struct {
	path   [][]byte // the bucket it is in; for a bucket, its parent
	key    []byte
	val    []byte
	bucket bool
	seq    uint64
}

type copier struct {
	dst               *Store
	maxKeys, maxBytes int
	items             []copyItem
	size              int
	st                *CopyStats
}

func (c *copier) bucket(path [][]byte, name []byte, b kv.Bucket) error {
	if err := c.add(copyItem{path: path, key: slices.Clone(name), bucket: true, seq: b.Sequence()}); err != nil {
		return err
	}
	c.st.Buckets++
	inner := append(slices.Clone(path), slices.Clone(name))
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			return c.bucket(inner, k, b.Bucket(k))
		}
		c.st.Keys++
		c.st.Bytes += int64(len(v))
		return c.add(copyItem{path: inner, key: slices.Clone(k), val: slices.Clone(v)})
	})
}

func (c *copier) add(it copyItem) error {
	if len(c.items) >= c.maxKeys || (c.size+len(it.val) > c.maxBytes && len(c.items) > 0) {
		if err := c.flush(); err != nil {
			return err
		}
	}
	c.items = append(c.items, it)
	c.size += len(it.key) + len(it.val)
	return nil
}

func (c *copier) flush() error {
	if len(c.items) == 0 {
		return nil
	}
	items := c.items
	c.items, c.size = nil, 0
	return c.dst.rawUpdate(func(tx kv.Tx) error {
		var b kv.Bucket
		var at [][]byte
		for _, it := range items {
			if b == nil || !slices.EqualFunc(at, it.path, bytes.Equal) {
				b = nil
				for i, p := range it.path {
					var err error
					if i == 0 {
						b, err = tx.CreateBucketIfNotExists(p)
					} else {
						b, err = b.CreateBucketIfNotExists(p)
					}
					if err != nil {
						return err
					}
				}
				at = it.path
			}
			if !it.bucket {
				if err := b.Put(it.key, it.val); err != nil {
					return err
				}
				continue
			}
			var nb kv.Bucket
			var err error
			if b == nil {
				nb, err = tx.CreateBucketIfNotExists(it.key)
			} else {
				nb, err = b.CreateBucketIfNotExists(it.key)
			}
			if err != nil {
				return err
			}
			if it.seq != 0 {
				if err := nb.SetSequence(it.seq); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// empty reports whether the store holds nothing: no file (or an empty
// one), or no key under the etcd prefix.
func (s *Store) empty() (bool, error) {
	if s.etcd != nil {
		ctx, cancel := s.etcdCtx()
		defer cancel()
		ok, err := s.etcd.Empty(ctx)
		return ok, s.etcdErr(err)
	}
	fi, err := os.Stat(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return fi.Size() == 0, nil
}

// wipe deletes everything the store holds.
func (s *Store) wipe() error {
	if s.etcd != nil {
		ctx, cancel := s.etcdCtx()
		defer cancel()
		return s.etcdErr(s.etcd.DeleteAll(ctx))
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// rawUpdate runs fn in a write transaction without the schema check and
// without upgrading (for Copy, which writes the meta bucket last).
func (s *Store) rawUpdate(fn func(tx kv.Tx) error) error {
	if s.etcd != nil {
		ctx, cancel := s.etcdCtx()
		defer cancel()
		return s.etcdErr(s.etcd.Update(ctx, fn))
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return err
	}
	q, err := s.lockQueue(s.timeout)
	if err != nil {
		return s.openError(bolterrors.ErrTimeout)
	}
	defer q.release()
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{Timeout: s.timeout})
	if err != nil {
		return s.openError(err)
	}
	defer db.Close()
	return s.guard(func() error {
		return db.Update(func(btx *bolt.Tx) error { return fn(kv.Bolt(btx)) })
	})
}
