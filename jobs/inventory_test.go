package jobs_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/jobs/jobstest"
)

// addVersion records a version whose snapshot is body, made from prev;
// it returns the head and what next was given.
func addVersion(t *testing.T, s *jobs.Store, keep int, body string) (jobs.InventoryHead, *jobs.InventoryRecord) {
	t.Helper()
	var given *jobs.InventoryRecord
	h, err := s.AddInventory(keep, 100, func(prev *jobs.InventoryRecord) (jobs.InventoryHead, []byte, error) {
		given = prev
		return jobs.InventoryHead{At: time.Now().UTC(), Target: "*", Minions: 1}, []byte(body), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, given
}

func TestInventoryVersions(t *testing.T) {
	s := jobstest.New(t)
	if hs, err := s.InventoryHeads(); err != nil || len(hs) != 0 {
		t.Fatalf("a new store: %v, %v; want no versions", hs, err)
	}
	if _, err := s.InventoryVersion(0); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("newest of none: %v, want ErrNotFound", err)
	}

	for i := 1; i <= 5; i++ {
		body := strings.Repeat(fmt.Sprintf(`{"v":%d}`, i), 100)
		h, prev := addVersion(t, s, 3, body)
		if h.Version != i || h.Bytes <= 0 || h.Bytes >= len(body) {
			t.Errorf("version %d: head %+v, want version %d and fewer bytes than %d", i, h, i, len(body))
		}
		switch {
		case i == 1 && prev != nil:
			t.Errorf("the first version was given a previous one: %+v", prev.Head)
		case i > 1 && (prev == nil || prev.Head.Version != i-1 || !strings.HasPrefix(string(prev.Data), fmt.Sprintf(`{"v":%d}`, i-1))):
			t.Errorf("version %d was made from %+v, want version %d", i, prev, i-1)
		}
	}
	hs, err := s.InventoryHeads()
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, h := range hs {
		got = append(got, h.Version)
	}
	if fmt.Sprint(got) != "[5 4 3]" {
		t.Errorf("versions kept = %v, want [5 4 3] (newest first, 3 kept)", got)
	}
	newest, err := s.InventoryVersion(0)
	if err != nil || newest.Head.Version != 5 || !strings.HasPrefix(string(newest.Data), `{"v":5}`) {
		t.Errorf("newest: %+v, %v", newest.Head, err)
	}
	if _, err := s.InventoryVersion(2); !errors.Is(err, jobs.ErrNotFound) || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("a version retention deleted: %v, want ErrNotFound naming it", err)
	}
	for _, v := range []int{-1, 99} {
		if _, err := s.InventoryVersion(v); !errors.Is(err, jobs.ErrNotFound) {
			t.Errorf("version %d: %v, want ErrNotFound", v, err)
		}
	}
	// Retention never makes a number come back; keep 1 drops the rest.
	if h, _ := addVersion(t, s, 1, "{}"); h.Version != 6 {
		t.Errorf("after retention: version %d, want 6", h.Version)
	}
	if hs, _ := s.InventoryHeads(); len(hs) != 1 || hs[0].Version != 6 {
		t.Errorf("keep 1: %+v, want version 6 alone", hs)
	}
}

func TestInventoryRefusesAndChangesNothing(t *testing.T) {
	s := jobstest.New(t)
	addVersion(t, s, 10, "{}")
	for _, k := range [][2]int{{-1, 100}, {0, 0}} {
		if _, err := s.AddInventory(k[0], k[1], nil); err == nil || !strings.Contains(err.Error(), "at least 1") {
			t.Errorf("keep %d, default %d: %v, want a refusal", k[0], k[1], err)
		}
	}
	boom := errors.New("boom")
	if _, err := s.AddInventory(10, 100, func(*jobs.InventoryRecord) (jobs.InventoryHead, []byte, error) {
		return jobs.InventoryHead{}, nil, boom
	}); !errors.Is(err, boom) {
		t.Errorf("next failing: %v, want its error", err)
	}
	if h, _ := addVersion(t, s, 10, "{}"); h.Version != 2 {
		t.Errorf("after a failed add: version %d, want 2 (the failure used no number)", h.Version)
	}
}

// damage changes overlord.db's inventory buckets directly.
func damage(t *testing.T, s *jobs.Store, fn func(heads, data *bolt.Bucket) error) {
	t.Helper()
	db, err := bolt.Open(s.Path(), 0o600, &bolt.Options{Timeout: jobstest.LockTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		return fn(tx.Bucket([]byte("inventory")), tx.Bucket([]byte("inventory_data")))
	}); err != nil {
		t.Fatal(err)
	}
}

func key(v int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }

// A version whose snapshot is missing or garbled, or whose head does not
// decode, is an error that says which version is damaged, never a panic
// or a wrong answer; new versions are still made, from the newest
// readable one.
func TestInventoryDamaged(t *testing.T) {
	tests := []struct {
		name   string
		damage func(heads, data *bolt.Bucket) error
		want   string
	}{
		{"missing snapshot", func(_, data *bolt.Bucket) error { return data.Delete(key(2)) }, "version 2 is damaged: its snapshot is missing"},
		{"garbled snapshot", func(_, data *bolt.Bucket) error { return data.Put(key(2), []byte("not gzip")) }, "version 2 is damaged: its snapshot"},
		{"truncated snapshot", func(_, data *bolt.Bucket) error { return data.Put(key(2), data.Get(key(2))[:10]) }, "version 2 is damaged: its snapshot"},
		{"garbled head", func(heads, _ *bolt.Bucket) error { return heads.Put(key(2), []byte("{")) }, "version 2 is damaged: its head"},
		{"head of another version", func(heads, _ *bolt.Bucket) error { return heads.Put(key(2), []byte(`{"version":7}`)) }, "version 2 is damaged: its head says version 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := jobstest.New(t)
			addVersion(t, s, 10, `{"v":1}`)
			addVersion(t, s, 10, `{"v":2}`)
			damage(t, s, tt.damage)
			_, err := s.InventoryVersion(2)
			if !errors.Is(err, jobs.ErrDamaged) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("read: %v, want ErrDamaged saying %q", err, tt.want)
			}
			if _, err := s.InventoryVersion(1); err != nil {
				t.Errorf("the undamaged version 1: %v", err)
			}
			h, prev := addVersion(t, s, 10, `{"v":3}`)
			if h.Version != 3 || prev == nil || prev.Head.Version != 1 {
				t.Errorf("after damage: version %d made from %+v, want 3 from version 1", h.Version, prev)
			}
		})
	}
	s := jobstest.New(t)
	addVersion(t, s, 10, "{}")
	damage(t, s, func(heads, _ *bolt.Bucket) error { return heads.Put(key(1), []byte("x")) })
	if _, err := s.InventoryHeads(); !errors.Is(err, jobs.ErrDamaged) || !strings.Contains(err.Error(), "version 1") {
		t.Errorf("listing with a damaged head: %v, want ErrDamaged naming version 1", err)
	}
}

// A store made before the inventory (no buckets) reads as empty and
// takes a first version.
func TestInventoryOldStore(t *testing.T) {
	s := jobstest.PreEnrolment(t)
	if hs, err := s.InventoryHeads(); err != nil || len(hs) != 0 {
		t.Fatalf("old store: %v, %v", hs, err)
	}
	if h, _ := addVersion(t, s, 10, "{}"); h.Version != 1 {
		t.Errorf("first version in an old store: %d", h.Version)
	}
}

// keep is remembered: a version added without one keeps what the last
// one given said, or the default if none was ever given.
func TestInventoryKeepRemembered(t *testing.T) {
	s := jobstest.New(t)
	count := func() int {
		hs, err := s.InventoryHeads()
		if err != nil {
			t.Fatal(err)
		}
		return len(hs)
	}
	for range 4 {
		addVersion(t, s, 0, "{}") // the default, 100
	}
	if n, err := s.InventoryKeep(); err != nil || n != 0 || count() != 4 {
		t.Fatalf("nothing given: keep %d, %v, %d versions; want 0 and 4", n, err, count())
	}
	addVersion(t, s, 3, "{}")
	addVersion(t, s, 0, "{}")
	addVersion(t, s, 0, "{}")
	if n, _ := s.InventoryKeep(); n != 3 || count() != 3 {
		t.Errorf("after keep 3: keep %d, %d versions; want 3 and 3", n, count())
	}
	addVersion(t, s, 5, "{}")
	addVersion(t, s, 0, "{}")
	if n, _ := s.InventoryKeep(); n != 5 || count() != 5 {
		t.Errorf("after keep 5: keep %d, %d versions; want 5 and 5", n, count())
	}
}
