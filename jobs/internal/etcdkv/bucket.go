package etcdkv

import (
	"fmt"
	"slices"
	"sort"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/overlordhq/overlord/jobs/internal/kv"
)

type bucket struct {
	tx     *tx
	path   [][]byte
	prefix string // K(path)
	marker string // the etcd key of its marker; "" for the top level
}

func (b *bucket) key(k []byte) string {
	return string(esc([]byte(b.prefix), k))
}

func (b *bucket) child(name []byte) *bucket {
	path := append(slices.Clone(b.path), slices.Clone(name))
	return &bucket{tx: b.tx, path: path, prefix: bucketPrefix(b.tx.db.prefix, len(path), path), marker: b.key(name)}
}

func isBucket(v []byte) bool { return len(v) > 0 && v[0] == tagBucket }
func isValue(v []byte) bool  { return len(v) > 0 && v[0] == tagValue }

func (b *bucket) Get(k []byte) []byte {
	if len(b.path) == 0 || len(k) == 0 {
		return nil
	}
	if v := b.tx.lookupIn(b.prefix, b.key(k), readMod); isValue(v) {
		return v[1:]
	}
	return nil
}

func (b *bucket) Put(k, v []byte) error {
	if len(k) == 0 {
		return kv.ErrKeyRequired
	}
	if len(b.path) == 0 {
		return kv.ErrIncompatible // no values at the top level
	}
	val := make([]byte, 1+len(v))
	val[0] = tagValue
	copy(val[1:], v)
	return b.tx.put(b.key(k), val)
}

func (b *bucket) Delete(k []byte) error {
	if !b.tx.writable {
		return kv.ErrTxNotWritable
	}
	if b.tx.err != nil {
		return b.tx.err
	}
	key := b.key(k)
	if c, ok := b.tx.cache[key]; ok && isBucket(c.val) {
		if _, written := b.tx.writes[key]; !written {
			return kv.ErrIncompatible
		}
	}
	if b.tx.deleted(key) {
		return nil
	}
	b.tx.writes[key] = write{}
	if b.marker != "" {
		b.tx.bumps[b.marker] = true
	}
	return nil
}

func (b *bucket) Bucket(name []byte) kv.Bucket {
	if len(name) == 0 || len(b.path)+1 >= MaxDepth {
		return nil
	}
	if isBucket(b.tx.lookupIn(b.prefix, b.key(name), readCreate)) {
		return b.child(name)
	}
	return nil
}

func (b *bucket) CreateBucket(name []byte) (kv.Bucket, error) {
	if len(name) == 0 {
		return nil, kv.ErrKeyRequired
	}
	if len(b.path)+1 >= MaxDepth {
		return nil, fmt.Errorf("etcd store: buckets nest at most %d deep", MaxDepth-1)
	}
	switch v := b.tx.lookupIn(b.prefix, b.key(name), readCreate); {
	case b.tx.err != nil:
		return nil, b.tx.err
	case isBucket(v):
		return nil, kv.ErrBucketExists
	case v != nil:
		return nil, kv.ErrIncompatible
	}
	if err := b.tx.put(b.key(name), []byte{tagBucket, '0'}); err != nil {
		return nil, err
	}
	return b.child(name), nil
}

func (b *bucket) CreateBucketIfNotExists(name []byte) (kv.Bucket, error) {
	if len(name) == 0 {
		return nil, kv.ErrKeyRequired
	}
	if len(b.path)+1 < MaxDepth {
		switch v := b.tx.lookupIn(b.prefix, b.key(name), readCreate); {
		case b.tx.err != nil:
			return nil, b.tx.err
		case isBucket(v):
			return b.child(name), nil
		}
	}
	return b.CreateBucket(name)
}

func (b *bucket) DeleteBucket(name []byte) error {
	if !b.tx.writable {
		return kv.ErrTxNotWritable
	}
	key := b.key(name)
	switch v := b.tx.lookupIn(b.prefix, key, readCreate); {
	case b.tx.err != nil:
		return b.tx.err
	case v == nil:
		return kv.ErrBucketNotFound
	case !isBucket(v):
		return kv.ErrIncompatible
	}
	b.tx.writes[key] = write{}
	path := append(slices.Clone(b.path), slices.Clone(name))
	for depth := len(path); depth < MaxDepth; depth++ {
		start, end := childRange(bucketPrefix(b.tx.db.prefix, depth, path))
		for k := range b.tx.writes {
			if k >= start && k < end {
				delete(b.tx.writes, k)
			}
		}
		b.tx.dels = append(b.tx.dels, [2]string{start, end})
	}
	if b.marker != "" {
		b.tx.bumps[b.marker] = true
	}
	return nil
}

func (b *bucket) ForEach(fn func(k, v []byte) error) error {
	c := b.cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return b.tx.err
}

func (b *bucket) ForEachBucket(fn func(k []byte) error) error {
	return b.ForEach(func(k, v []byte) error {
		if v != nil {
			return nil
		}
		return fn(k)
	})
}

func (b *bucket) Cursor() kv.Cursor { return b.cursor() }

func (b *bucket) Sequence() uint64 {
	if b.marker == "" {
		return 0
	}
	v := b.tx.lookup(b.marker, readMod)
	if !isBucket(v) {
		return 0
	}
	n, _ := strconv.ParseUint(string(v[1:]), 10, 64)
	return n
}

func (b *bucket) SetSequence(n uint64) error {
	if b.marker == "" {
		return kv.ErrIncompatible
	}
	return b.tx.put(b.marker, strconv.AppendUint([]byte{tagBucket}, n, 10))
}

func (b *bucket) NextSequence() (uint64, error) {
	n := b.Sequence() + 1
	if b.tx.err != nil {
		return 0, b.tx.err
	}
	return n, b.SetSequence(n)
}

func (b *bucket) SetFillPercent(float64) {}

// item is one entry of a bucket as a cursor has it.
type item struct {
	key  string // the etcd key
	name []byte
	val  []byte // nil for a bucket
}

// pageSize is how many keys a read-only cursor fetches at a time.
const pageSize = 512

// cursor walks a bucket. In a read-only transaction it fetches a page of
// keys at a time; in a write transaction it fetches the whole bucket at
// once (to lay the transaction's own writes over it, and to compare the
// whole range at commit).
type cursor struct {
	b          *bucket
	start, end string
	full       bool
	items      []item
	idx        int
	// more before items[0], after the last item (paged only)
	before, after bool
}

func (b *bucket) cursor() *cursor {
	start, end := childRange(b.prefix)
	c := &cursor{b: b, start: start, end: end, full: b.tx.writable}
	if c.full {
		c.loadAll()
	}
	return c
}

func (c *cursor) toItem(k, v []byte) (item, bool) {
	name, ok := unesc(k[len(c.b.prefix):])
	if !ok {
		return item{}, false
	}
	it := item{key: string(k), name: name}
	switch {
	case isValue(v):
		it.val = v[1:]
	case isBucket(v):
	default:
		return item{}, false // no tag: not ours
	}
	return it, true
}

// fetch reads keys of [from, to) in order (or reverse order), at most
// limit of them (0: all); more says whether there were more.
func (c *cursor) fetch(from, to string, desc bool, limit int64) (items []item, more bool) {
	t := c.b.tx
	opts := []clientv3.OpOption{clientv3.WithRange(to)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(limit))
	}
	if desc {
		opts = append(opts, clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	}
	resp, err := t.get(from, opts...)
	if err != nil {
		return nil, false
	}
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		if _, ok := t.cache[k]; !ok {
			t.cache[k] = cached{val: kv.Value, mod: kv.ModRevision, crev: kv.CreateRevision}
		}
		if it, ok := c.toItem(kv.Key, kv.Value); ok {
			items = append(items, it)
		}
	}
	if desc {
		slices.Reverse(items)
	}
	return items, resp.More
}

// loadAll reads the whole bucket and lays the transaction's writes over
// it; the range is compared at commit.
func (c *cursor) loadAll() {
	t := c.b.tx
	items, _ := c.fetch(c.start, c.end, false, 0)
	if c.b.marker != "" {
		t.lookup(c.b.marker, readMod)
	}
	t.scans = append(t.scans, scan{start: c.start, end: c.end, marker: c.b.marker})
	if t.deleted(c.start) {
		items = nil
	}
	changed := false
	byKey := make(map[string]int, len(items))
	for i, it := range items {
		byKey[it.key] = i
	}
	for k, w := range t.writes {
		if k < c.start || k >= c.end {
			continue
		}
		changed = true
		if i, ok := byKey[k]; ok {
			if w.val == nil {
				items[i].key = "" // deleted
				continue
			}
			if it, ok := c.toItem([]byte(k), w.val); ok {
				items[i] = it
			}
			continue
		}
		if w.val == nil {
			continue
		}
		if it, ok := c.toItem([]byte(k), w.val); ok {
			items = append(items, it)
		}
	}
	if changed {
		items = slices.DeleteFunc(items, func(it item) bool { return it.key == "" })
		sort.Slice(items, func(i, j int) bool { return items[i].key < items[j].key })
	}
	c.items, c.idx = items, -1
}

func (c *cursor) at() ([]byte, []byte) {
	if c.idx < 0 || c.idx >= len(c.items) {
		return nil, nil
	}
	it := c.items[c.idx]
	return it.name, it.val
}

func (c *cursor) First() ([]byte, []byte) {
	if !c.full {
		c.items, c.after = c.fetch(c.start, c.end, false, pageSize)
		c.before = false
	}
	c.idx = 0
	return c.at()
}

func (c *cursor) Last() ([]byte, []byte) {
	if !c.full {
		c.items, c.before = c.fetch(c.start, c.end, true, pageSize)
		c.after = false
	}
	c.idx = len(c.items) - 1
	return c.at()
}

func (c *cursor) Seek(seek []byte) ([]byte, []byte) {
	from := max(c.b.key(seek), c.start)
	if c.full {
		c.idx = sort.Search(len(c.items), func(i int) bool { return c.items[i].key >= from })
		return c.at()
	}
	c.items, c.after = c.fetch(from, c.end, false, pageSize)
	c.before = true
	c.idx = 0
	return c.at()
}

func (c *cursor) Next() ([]byte, []byte) {
	if c.idx >= len(c.items) {
		return nil, nil
	}
	c.idx++
	if c.idx == len(c.items) && !c.full && c.after && len(c.items) > 0 {
		last := c.items[len(c.items)-1].key
		c.items, c.after = c.fetch(last+"\x00", c.end, false, pageSize)
		c.before = true
		c.idx = 0
	}
	return c.at()
}

func (c *cursor) Prev() ([]byte, []byte) {
	if c.idx < 0 {
		return nil, nil
	}
	c.idx--
	if c.idx == -1 && !c.full && c.before && len(c.items) > 0 {
		first := c.items[0].key
		c.items, c.before = c.fetch(c.start, first, true, pageSize)
		c.after = true
		c.idx = len(c.items) - 1
	}
	return c.at()
}
