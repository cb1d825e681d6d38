package etcdkv

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/overlordhq/overlord/internal/etcdtest"
	"github.com/overlordhq/overlord/jobs/internal/kv"
)

// Escaped names decode back and sort as the names do, whatever bytes
// they hold.
func TestEscapeOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte{0x00, 0x01, 0x02, '.', '/', '0', 'a', 0xfe, 0xff}
	var names [][]byte
	for range 2000 {
		n := make([]byte, 1+r.IntN(5))
		for i := range n {
			n[i] = alphabet[r.IntN(len(alphabet))]
		}
		names = append(names, n)
	}
	for _, a := range names {
		ea := esc(nil, a)
		if d, ok := unesc(ea); !ok || !bytes.Equal(d, a) {
			t.Fatalf("%q: escaped %q decodes to %q, %v", a, ea, d, ok)
		}
		if ea[0] == 0x00 {
			t.Fatalf("%q: escaped %q starts with 0x00", a, ea)
		}
	}
	for i := range 5000 {
		a, b := names[i%len(names)], names[r.IntN(len(names))]
		if got, want := bytes.Compare(esc(nil, a), esc(nil, b)), bytes.Compare(a, b); got != want {
			t.Fatalf("%q vs %q: escaped compare %d, want %d", a, b, got, want)
		}
	}
}

// A read-only cursor walks a bucket of more keys than a page, both ways
// and from a Seek, with binary keys; a write transaction sees its own
// writes in a walk; a bucket deleted takes everything below it, and not
// its sibling whose name continues with '/'.
func TestCursor(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.FreePorts(t, 2))
	db := New(c.Client(t), "/t/", 5*time.Second)
	ctx := context.Background()
	const n = 1300
	key := func(i int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(i)) }
	for from := 0; from < n; from += 100 {
		err := db.Update(ctx, func(tx kv.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			for i := from; i < min(from+100, n); i++ {
				if err := b.Put(key(i), fmt.Appendf(nil, "%d", i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	err := db.View(ctx, func(tx kv.Tx) error {
		b := tx.Bucket([]byte("b"))
		cur := b.Cursor()
		i := 0
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			if !bytes.Equal(k, key(i)) || string(v) != fmt.Sprint(i) {
				t.Fatalf("forward %d: %x=%q", i, k, v)
			}
			i++
		}
		if i != n {
			t.Errorf("forward walk: %d keys, want %d", i, n)
		}
		i = n - 1
		for k, _ := cur.Last(); k != nil; k, _ = cur.Prev() {
			if !bytes.Equal(k, key(i)) {
				t.Fatalf("backward %d: %x", i, k)
			}
			i--
		}
		if i != -1 {
			t.Errorf("backward walk stopped at %d", i)
		}
		k, _ := cur.Seek(key(700))
		k2, _ := cur.Prev()
		if !bytes.Equal(k, key(700)) || !bytes.Equal(k2, key(699)) {
			t.Errorf("Seek 700, Prev: %x, %x", k, k2)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(ctx, func(tx kv.Tx) error {
		top, _ := tx.CreateBucketIfNotExists([]byte("top"))
		for _, name := range []string{"a", "a/b"} {
			sub, err := top.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			deep, _ := sub.CreateBucket([]byte("deep"))
			deep.Put([]byte("k"), []byte(name))
		}
		b := tx.Bucket([]byte("b"))
		b.Delete(key(0))
		b.Put([]byte("zz"), []byte("new"))
		var keys [][]byte
		b.ForEach(func(k, _ []byte) error { keys = append(keys, slices.Clone(k)); return nil })
		if len(keys) != n || !bytes.Equal(keys[0], key(1)) || string(keys[n-1]) != "zz" {
			t.Errorf("a walk in the writing transaction: %d keys, first %x, last %q", len(keys), keys[0], keys[len(keys)-1])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(ctx, func(tx kv.Tx) error { return tx.Bucket([]byte("top")).DeleteBucket([]byte("a")) }); err != nil {
		t.Fatal(err)
	}
	db.View(ctx, func(tx kv.Tx) error {
		top := tx.Bucket([]byte("top"))
		if top.Bucket([]byte("a")) != nil {
			t.Error("bucket a still there")
		}
		ab := top.Bucket([]byte("a/b"))
		if ab == nil || string(ab.Bucket([]byte("deep")).Get([]byte("k"))) != "a/b" {
			t.Error("deleting a took a/b's keys")
		}
		return nil
	})
	resp, _ := c.Client(t).Get(ctx, "/t/3/top/a/deep/k")
	if len(resp.Kvs) != 0 {
		t.Error("a's nested key left in etcd")
	}
}

// A read that fails (etcd gone) ends the transaction at once with the
// error: the function does not go on as if the bucket did not exist, and
// nothing panics out of View or Update.
func TestReadFailureEndsTransaction(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.FreePorts(t, 2))
	db := New(c.Client(t), "/t/", 2*time.Second)
	ctx := context.Background()
	if err := db.Update(ctx, func(tx kv.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte("b"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	c.StopMember(0)
	for _, write := range []bool{false, true} {
		went := false
		fn := func(tx kv.Tx) error {
			b := tx.Bucket([]byte("b"))
			went = true
			if b == nil {
				return fmt.Errorf("bucket b is nil")
			}
			return nil
		}
		var err error
		if write {
			err = db.Update(ctx, fn)
		} else {
			err = db.View(ctx, fn)
		}
		if err == nil || went {
			t.Errorf("write %v with etcd gone: err %v, the function went on past the failed read: %v", write, err, went)
		}
	}
}
