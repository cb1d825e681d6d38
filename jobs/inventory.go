package jobs

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/overlordhq/overlord/jobs/internal/kv"
)

// The inventory's versions (overlord inventory): one key per version in
// each bucket, the version number as 8 bytes big-endian, so a cursor walks
// them in order. The heads are apart from the snapshots so that listing
// the versions never reads a snapshot. Stores made before them read as if
// they were empty; the first AddInventory creates them.
var (
	bucketInventory     = []byte("inventory")      // version -> JSON InventoryHead
	bucketInventoryData = []byte("inventory_data") // version -> the snapshot, gzip
	keyInventoryKeep    = []byte("inventory_keep") // in meta: how many versions to keep
)

// MaxInventoryData bounds a snapshot's size once uncompressed; a stored
// one that would be larger is reported damaged.
const MaxInventoryData = 1 << 30

// ErrDamaged is returned for a stored record that cannot be read back:
// it does not decode, or a part of it is missing.
var ErrDamaged = errors.New("damaged")

// InventoryHead describes one version of the inventory. The policy (what
// a snapshot holds, what counts as a change) is the caller's; the store
// numbers versions and keeps their bytes.
type InventoryHead struct {
	// Version numbers versions from 1, one more than any version before,
	// including versions retention deleted: never reused.
	Version     int       `json:"version"`
	At          time.Time `json:"at"`
	Target      string    `json:"target"`
	Minions     int       `json:"minions"`
	Unreachable int       `json:"unreachable"`
	Changed     int       `json:"changed"`
	// Bytes is the snapshot's size as stored (compressed).
	Bytes int `json:"bytes"`
}

// InventoryRecord is one version: its head and its snapshot, uncompressed.
type InventoryRecord struct {
	Head InventoryHead
	Data []byte
}

// InventoryNext makes a new version from the newest readable one (nil if
// there is none): its head (Version and Bytes are set by the store) and
// its snapshot. It runs inside the store's write transaction, and may run
// twice (see Store.update): it must only compute.
type InventoryNext func(prev *InventoryRecord) (InventoryHead, []byte, error)

// AddInventory records a new version made by next and deletes the oldest
// versions beyond the newest keep, in one transaction, so that a version
// is always made from the one just before it. keep is remembered: 0
// keeps the number the last AddInventory given one kept, or defaultKeep
// if none was ever given (so a snapshot taken by hand does not undo the
// service's retention). A damaged version is passed over as the previous
// one (the one before it is given), so that one damaged record never
// stops new versions.
func (s *Store) AddInventory(keep, defaultKeep int, next InventoryNext) (InventoryHead, error) {
	if keep < 0 || defaultKeep < 1 {
		return InventoryHead{}, fmt.Errorf("inventory: keep at least 1 version, not %d", min(keep, defaultKeep))
	}
	var head InventoryHead
	err := s.update(func(tx kv.Tx) error {
		keep := keep
		meta := tx.Bucket(bucketMeta)
		if keep > 0 {
			if err := meta.Put(keyInventoryKeep, []byte(strconv.Itoa(keep))); err != nil {
				return err
			}
		} else if n, err := strconv.Atoi(string(meta.Get(keyInventoryKeep))); err == nil && n > 0 {
			keep = n
		} else {
			keep = defaultKeep
		}
		heads, err := tx.CreateBucketIfNotExists(bucketInventory)
		if err != nil {
			return err
		}
		data, err := tx.CreateBucketIfNotExists(bucketInventoryData)
		if err != nil {
			return err
		}
		var prev *InventoryRecord
		c := heads.Cursor()
		for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
			if rec, err := readInventory(tx, k); err == nil {
				prev = &rec
				break
			}
		}
		h, body, err := next(prev)
		if err != nil {
			return err
		}
		seq, err := heads.NextSequence()
		if err != nil {
			return err
		}
		h.Version = int(seq)
		packed, err := pack(body)
		if err != nil {
			return err
		}
		h.Bytes = len(packed)
		key := versionKey(h.Version)
		if err := putJSON(heads, key, h); err != nil {
			return err
		}
		if err := data.Put(key, packed); err != nil {
			return err
		}
		head = h
		return trimInventory(heads, data, keep)
	})
	return head, err
}

// trimInventory deletes the oldest versions beyond the newest keep.
func trimInventory(heads, data kv.Bucket, keep int) error {
	// Walk back past the newest keep; what is left is to go.
	c := heads.Cursor()
	k, _ := c.Last()
	for i := 0; i < keep && k != nil; i++ {
		k, _ = c.Prev()
	}
	var old [][]byte
	for ; k != nil; k, _ = c.Prev() {
		old = append(old, append([]byte(nil), k...))
	}
	for _, k := range old {
		if err := heads.Delete(k); err != nil {
			return err
		}
		if err := data.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// InventoryKeep returns how many versions AddInventory keeps when not
// told: the last number given, or 0 if none was.
func (s *Store) InventoryKeep() (int, error) {
	var n int
	err := s.view(func(tx kv.Tx) error {
		n, _ = strconv.Atoi(string(tx.Bucket(bucketMeta).Get(keyInventoryKeep)))
		return nil
	})
	return max(n, 0), err
}

// InventoryHeads returns the head of every version, newest first. A head
// that does not decode is an error saying which version is damaged.
func (s *Store) InventoryHeads() ([]InventoryHead, error) {
	var out []InventoryHead
	err := s.view(func(tx kv.Tx) error {
		heads := tx.Bucket(bucketInventory)
		if heads == nil {
			return nil
		}
		c := heads.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			h, err := decodeHead(k, v)
			if err != nil {
				return err
			}
			out = append(out, h)
		}
		return nil
	})
	return out, err
}

// InventoryVersion returns version v, or the newest if v is 0: ErrNotFound
// (wrapped) if there is no such version, ErrDamaged if it cannot be read.
func (s *Store) InventoryVersion(v int) (InventoryRecord, error) {
	var rec InventoryRecord
	err := s.view(func(tx kv.Tx) error {
		heads := tx.Bucket(bucketInventory)
		if heads == nil {
			if v == 0 {
				return fmt.Errorf("inventory: no version yet: %w", ErrNotFound)
			}
			return fmt.Errorf("inventory version %d: %w", v, ErrNotFound)
		}
		key := versionKey(v)
		if v == 0 {
			if key, _ = heads.Cursor().Last(); key == nil {
				return fmt.Errorf("inventory: no version yet: %w", ErrNotFound)
			}
		} else if v < 0 || heads.Get(key) == nil {
			return fmt.Errorf("inventory version %d: %w", v, ErrNotFound)
		}
		var err error
		rec, err = readInventory(tx, key)
		return err
	})
	return rec, err
}

// readInventory reads the version at key, which has a head.
func readInventory(tx kv.Tx, key []byte) (InventoryRecord, error) {
	h, err := decodeHead(key, tx.Bucket(bucketInventory).Get(key))
	if err != nil {
		return InventoryRecord{}, err
	}
	var packed []byte
	if data := tx.Bucket(bucketInventoryData); data != nil {
		packed = data.Get(key)
	}
	if packed == nil {
		return InventoryRecord{}, fmt.Errorf("inventory version %d is %w: its snapshot is missing", h.Version, ErrDamaged)
	}
	body, err := unpack(packed)
	if err != nil {
		return InventoryRecord{}, fmt.Errorf("inventory version %d is %w: its snapshot: %v", h.Version, ErrDamaged, err)
	}
	return InventoryRecord{Head: h, Data: body}, nil
}

func decodeHead(key, v []byte) (InventoryHead, error) {
	var h InventoryHead
	if len(key) != 8 {
		return h, fmt.Errorf("inventory: a key of %d bytes is %w", len(key), ErrDamaged)
	}
	n := int(binary.BigEndian.Uint64(key))
	if err := json.Unmarshal(v, &h); err != nil {
		return h, fmt.Errorf("inventory version %d is %w: its head: %v", n, ErrDamaged, err)
	}
	if h.Version != n {
		return h, fmt.Errorf("inventory version %d is %w: its head says version %d", n, ErrDamaged, h.Version)
	}
	return h, nil
}

func versionKey(v int) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(v))
}

// pack compresses a snapshot. Gzip's window (32 KiB) spans several
// minions' entries, which repeat each other's keys and module lists.
func pack(body []byte) ([]byte, error) {
	var b bytes.Buffer
	zw, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(body); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func unpack(packed []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(packed))
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(zr, MaxInventoryData+1))
	if err != nil {
		return nil, err
	}
	if len(body) > MaxInventoryData {
		return nil, fmt.Errorf("over %d bytes uncompressed", MaxInventoryData)
	}
	return body, nil
}
