package kv

import (
	bolt "go.etcd.io/bbolt"
)

// Bolt returns tx as a Tx. Its buckets and cursors are bbolt's, each
// wrapped in a one-pointer struct (no allocation to make one).
func Bolt(tx *bolt.Tx) Tx { return boltTx{tx} }

type boltTx struct{ tx *bolt.Tx }

type boltBucket struct{ b *bolt.Bucket }

type boltCursor struct{ c *bolt.Cursor }

func bucket(b *bolt.Bucket) Bucket {
	if b == nil {
		return nil // a nil interface, not a nil boltBucket
	}
	return boltBucket{b}
}

func bucketErr(b *bolt.Bucket, err error) (Bucket, error) {
	if err != nil {
		return nil, err
	}
	return boltBucket{b}, nil
}

func (t boltTx) Bucket(name []byte) Bucket { return bucket(t.tx.Bucket(name)) }
func (t boltTx) CreateBucket(name []byte) (Bucket, error) {
	return bucketErr(t.tx.CreateBucket(name))
}
func (t boltTx) CreateBucketIfNotExists(name []byte) (Bucket, error) {
	return bucketErr(t.tx.CreateBucketIfNotExists(name))
}
func (t boltTx) DeleteBucket(name []byte) error { return t.tx.DeleteBucket(name) }
func (t boltTx) ForEach(fn func(name []byte, b Bucket) error) error {
	return t.tx.ForEach(func(name []byte, b *bolt.Bucket) error { return fn(name, bucket(b)) })
}
func (t boltTx) Writable() bool { return t.tx.Writable() }

func (b boltBucket) Get(key []byte) []byte          { return b.b.Get(key) }
func (b boltBucket) Put(key, value []byte) error    { return b.b.Put(key, value) }
func (b boltBucket) Delete(key []byte) error        { return b.b.Delete(key) }
func (b boltBucket) Bucket(name []byte) Bucket      { return bucket(b.b.Bucket(name)) }
func (b boltBucket) DeleteBucket(name []byte) error { return b.b.DeleteBucket(name) }
func (b boltBucket) CreateBucket(name []byte) (Bucket, error) {
	return bucketErr(b.b.CreateBucket(name))
}
func (b boltBucket) CreateBucketIfNotExists(name []byte) (Bucket, error) {
	return bucketErr(b.b.CreateBucketIfNotExists(name))
}
func (b boltBucket) ForEach(fn func(k, v []byte) error) error { return b.b.ForEach(fn) }
func (b boltBucket) ForEachBucket(fn func(k []byte) error) error {
	return b.b.ForEachBucket(fn)
}
func (b boltBucket) Cursor() Cursor                { return boltCursor{b.b.Cursor()} }
func (b boltBucket) Sequence() uint64              { return b.b.Sequence() }
func (b boltBucket) SetSequence(v uint64) error    { return b.b.SetSequence(v) }
func (b boltBucket) NextSequence() (uint64, error) { return b.b.NextSequence() }
func (b boltBucket) SetFillPercent(p float64)      { b.b.FillPercent = p }

func (c boltCursor) First() ([]byte, []byte)           { return c.c.First() }
func (c boltCursor) Last() ([]byte, []byte)            { return c.c.Last() }
func (c boltCursor) Next() ([]byte, []byte)            { return c.c.Next() }
func (c boltCursor) Prev() ([]byte, []byte)            { return c.c.Prev() }
func (c boltCursor) Seek(seek []byte) ([]byte, []byte) { return c.c.Seek(seek) }
