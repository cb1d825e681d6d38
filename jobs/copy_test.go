package jobs_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/overlordhq/overlord/internal/etcdtest"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/jobs/jobstest"
	"github.com/overlordhq/overlord/status"
)

// A store copied from bbolt to etcd (with etcd's default limits) and back
// reads the same: jobs and their entries, the registry, groups,
// certificates, the inventory's versions and their numbering; a copy to a
// store that holds data is refused unless replacing it.
func TestCopy(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 1, etcdtest.FreePorts(t, 2), etcdtest.EtcdDefaults())
	src := jobstest.New(t)
	var names []string
	for i := range 150 {
		names = append(names, fmt.Sprintf("m%03d", i))
	}
	addMinions(t, src, names...)
	if err := src.AddToGroup("web", names[:3]); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		rec := newJob(t, src, names[i%5:i%5+3]...)
		if i%2 == 0 {
			if _, err := src.Write(rec.ID, map[string]status.Result{names[i%5]: okResult}, finish); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := src.RecordCert(jobs.Cert{Serial: "0a", Name: "web1", Role: "minion"}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := src.AddInventory(2, 5, func(*jobs.InventoryRecord) (jobs.InventoryHead, []byte, error) {
			return jobs.InventoryHead{At: time.Now()}, []byte(`{"x":1}`), nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	dst, err := jobs.Open(etcdAddr(c)+"/copy", "", jobs.Options{LockTimeout: jobstest.EtcdTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	st, err := jobs.Copy(dst, src, false)
	if err != nil {
		t.Fatalf("copy to etcd: %v", err)
	}
	if st.Jobs != 30 {
		t.Errorf("copied %d jobs, want 30", st.Jobs)
	}
	same(t, src, dst)
	if problems, err := dst.Check(); err != nil || len(problems) > 0 {
		t.Errorf("check of the copy: %v %v", problems, err)
	}
	if _, err := jobs.Copy(dst, src, false); !errors.Is(err, jobs.ErrNotEmpty) {
		t.Errorf("copy onto a store with data: %v, want ErrNotEmpty", err)
	}
	// A new version continues the numbering.
	h, err := dst.AddInventory(0, 5, func(*jobs.InventoryRecord) (jobs.InventoryHead, []byte, error) {
		return jobs.InventoryHead{At: time.Now()}, []byte(`{}`), nil
	})
	if err != nil || h.Version != 4 {
		t.Errorf("the next version on the copy: %d, %v; want 4", h.Version, err)
	}

	back := jobs.New(filepath.Join(t.TempDir(), "overlord.db"), jobstest.LockTimeout)
	if _, err := jobs.Copy(back, dst, false); err != nil {
		t.Fatalf("copy back to bbolt: %v", err)
	}
	same(t, dst, back)
	jobstest.Check(t, back.Path())
	if _, err := jobs.Copy(back, src, true); err != nil {
		t.Fatalf("copy with replace: %v", err)
	}
	same(t, src, back)
}

// same fails t unless a and b read the same.
func same(t *testing.T, a, b *jobs.Store) {
	t.Helper()
	ia, err := a.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	ib, err := b.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ia, ib) {
		t.Errorf("registries differ: %d minions, %v groups vs %d, %v", len(ia.Minions), ia.Groups, len(ib.Minions), ib.Groups)
	}
	la, _ := a.ListJobs(jobs.ListOptions{})
	lb, err := b.ListJobs(jobs.ListOptions{})
	if err != nil || !reflect.DeepEqual(la, lb) {
		t.Errorf("job lists differ (%d vs %d jobs, %v)", len(la), len(lb), err)
	}
	for _, r := range la {
		_, ea, _ := a.Job(r.ID)
		_, eb, err := b.Job(r.ID)
		if err != nil || !reflect.DeepEqual(ea, eb) {
			t.Errorf("job %s: entries differ (%v)", r.ID, err)
		}
	}
	ca, _ := a.Certs()
	cb, _ := b.Certs()
	if !reflect.DeepEqual(ca, cb) {
		t.Errorf("certificates differ: %v vs %v", ca, cb)
	}
	ha, _ := a.InventoryHeads()
	hb, _ := b.InventoryHeads()
	if !reflect.DeepEqual(ha, hb) {
		t.Errorf("inventory versions differ: %v vs %v", ha, hb)
	}
}
