// Package kv is the storage the jobs package's Store works on: ordered
// keys in nested buckets, read and written in transactions, with the
// subset of bbolt's API the store uses and bbolt's method names. Two
// implementations: Bolt (this package), a bbolt transaction as it is,
// and the etcd adapter (package etcdkv).
//
// The contracts are bbolt's: keys are non-empty byte strings, sorted
// byte-wise within a bucket; a bucket holds values and buckets, one name
// space; a value read is valid only during its transaction; a bucket's
// value in ForEach and in a cursor is nil.
package kv

import (
	"errors"

	bolterrors "go.etcd.io/bbolt/errors"
)

// Errors of the implementations: bbolt's own, which Bolt returns as they
// are.
var (
	ErrBucketExists   = bolterrors.ErrBucketExists
	ErrBucketNotFound = bolterrors.ErrBucketNotFound
	ErrIncompatible   = bolterrors.ErrIncompatibleValue
	ErrKeyRequired    = bolterrors.ErrKeyRequired
	ErrTxNotWritable  = bolterrors.ErrTxNotWritable

	// ErrBusy is wrapped by an error of a store that did not answer in
	// time: trying again later may work.
	ErrBusy = errors.New("store busy")
)

// Tx is a transaction: its top-level buckets.
type Tx interface {
	// Bucket returns the top-level bucket name, or nil.
	Bucket(name []byte) Bucket
	CreateBucket(name []byte) (Bucket, error)
	CreateBucketIfNotExists(name []byte) (Bucket, error)
	DeleteBucket(name []byte) error
	// ForEach calls fn for every top-level bucket, in name order.
	ForEach(fn func(name []byte, b Bucket) error) error
	// Writable reports whether the transaction may write.
	Writable() bool
}

// Bucket is a bucket of a transaction.
type Bucket interface {
	// Get returns the value of key, or nil if there is none or key is
	// a bucket.
	Get(key []byte) []byte
	Put(key, value []byte) error
	// Delete deletes key's value (nothing if there is none);
	// ErrIncompatible if key is a bucket.
	Delete(key []byte) error

	// Bucket returns the nested bucket name, or nil.
	Bucket(name []byte) Bucket
	CreateBucket(name []byte) (Bucket, error)
	CreateBucketIfNotExists(name []byte) (Bucket, error)
	// DeleteBucket deletes the nested bucket name and all it holds.
	DeleteBucket(name []byte) error

	// ForEach calls fn for every key in order, with a nil value for a
	// nested bucket. fn must not write to the bucket.
	ForEach(fn func(k, v []byte) error) error
	// ForEachBucket calls fn for every nested bucket, in order.
	ForEachBucket(fn func(k []byte) error) error
	Cursor() Cursor

	Sequence() uint64
	SetSequence(v uint64) error
	NextSequence() (uint64, error)

	// SetFillPercent is a hint to bbolt on how full to fill pages
	// (bbolt's Bucket.FillPercent); others ignore it.
	SetFillPercent(p float64)
}

// Cursor walks a bucket's keys in order. Each method returns a key and
// its value (nil for a nested bucket), or a nil key past either end.
type Cursor interface {
	First() (k, v []byte)
	Last() (k, v []byte)
	Next() (k, v []byte)
	Prev() (k, v []byte)
	// Seek moves to key, or to the first key after it.
	Seek(seek []byte) (k, v []byte)
}
