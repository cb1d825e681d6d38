package jobs_test

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/jobs/jobstest"
)

func addMinions(t *testing.T, s *jobs.Store, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := s.AddMinion(jobs.Minion{Name: n, Addr: n + ":51234", AddedAt: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
	}
}

func minionNames(t *testing.T, s *jobs.Store) []string {
	t.Helper()
	ms, err := s.Minions()
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, m := range ms {
		names = append(names, m.Name)
	}
	return names
}

func groups(t *testing.T, s *jobs.Store) map[string][]string {
	t.Helper()
	inv, err := s.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	return inv.Groups
}

func TestMinions(t *testing.T) {
	s := jobstest.New(t)
	if ms, err := s.Minions(); err != nil || len(ms) != 0 {
		t.Fatalf("new store: Minions = %v, %v", ms, err)
	}
	added := time.Date(2026, 11, 21, 13, 0, 0, 0, time.UTC)
	want := jobs.Minion{Name: "web2", Addr: "10.0.0.2:51234", Fingerprint: "ab12", AddedAt: added, Facts: map[string]any{"os": "linux"}}
	if err := s.AddMinion(want); err != nil {
		t.Fatal(err)
	}
	addMinions(t, s, "web1", "db1")
	if got := minionNames(t, s); !reflect.DeepEqual(got, []string{"db1", "web1", "web2"}) {
		t.Errorf("Minions = %v, want sorted by name", got)
	}
	ms, _ := s.Minions()
	if !reflect.DeepEqual(ms[2], want) {
		t.Errorf("stored %+v, read back %+v", want, ms[2])
	}

	err := s.AddMinion(jobs.Minion{Name: "web1", Addr: "elsewhere:1"})
	if !errors.Is(err, jobs.ErrExists) {
		t.Errorf("AddMinion(web1) again = %v, want ErrExists", err)
	}
	ms, _ = s.Minions()
	if ms[1].Addr != "web1:51234" {
		t.Errorf("a refused AddMinion changed web1's address to %s", ms[1].Addr)
	}

	if err := s.RemoveMinion("web1"); err != nil {
		t.Fatal(err)
	}
	if got := minionNames(t, s); !reflect.DeepEqual(got, []string{"db1", "web2"}) {
		t.Errorf("after remove: %v", got)
	}
	if err := s.RemoveMinion("web1"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("RemoveMinion(web1) again = %v, want ErrNotFound", err)
	}
	// A removed name may be added again.
	addMinions(t, s, "web1")
}

func TestRemoveMinionDropsFromGroups(t *testing.T) {
	s := jobstest.New(t)
	addMinions(t, s, "web1", "web2", "db1")
	for g, members := range map[string][]string{"web": {"web1", "web2"}, "all": {"web1", "web2", "db1"}, "db": {"db1"}} {
		if err := s.AddToGroup(g, members); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RemoveMinion("web1"); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"web": {"web2"}, "all": {"db1", "web2"}, "db": {"db1"}}
	if got := groups(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("groups after removing web1 = %v, want %v", got, want)
	}
}

func TestGroups(t *testing.T) {
	s := jobstest.New(t)
	addMinions(t, s, "web1", "web2", "web3", "db1")
	steps := []struct {
		name    string
		do      func() error
		wantErr error
		want    map[string][]string
	}{
		{"add creates", func() error { return s.AddToGroup("web", []string{"web2", "web1"}) }, nil,
			map[string][]string{"web": {"web1", "web2"}}},
		{"add merges sorted", func() error { return s.AddToGroup("web", []string{"web3", "web1"}) }, nil,
			map[string][]string{"web": {"web1", "web2", "web3"}}},
		{"add twice in one call", func() error { return s.AddToGroup("db", []string{"db1", "db1"}) }, nil,
			map[string][]string{"web": {"web1", "web2", "web3"}, "db": {"db1"}}},
		{"add unknown minion changes nothing", func() error { return s.AddToGroup("web", []string{"web4"}) }, jobs.ErrNotFound,
			map[string][]string{"web": {"web1", "web2", "web3"}, "db": {"db1"}}},
		{"add unknown minion creates no group", func() error { return s.AddToGroup("new", []string{"db1", "nosuch"}) }, jobs.ErrNotFound,
			map[string][]string{"web": {"web1", "web2", "web3"}, "db": {"db1"}}},
		{"remove members", func() error { return s.RemoveGroup("web", []string{"web3", "web1"}) }, nil,
			map[string][]string{"web": {"web2"}, "db": {"db1"}}},
		{"remove a non-member changes nothing", func() error { return s.RemoveGroup("web", []string{"web2", "db1"}) }, jobs.ErrNotFound,
			map[string][]string{"web": {"web2"}, "db": {"db1"}}},
		{"remove last member keeps the group", func() error { return s.RemoveGroup("web", []string{"web2"}) }, nil,
			map[string][]string{"web": {}, "db": {"db1"}}},
		{"remove group", func() error { return s.RemoveGroup("web", nil) }, nil,
			map[string][]string{"db": {"db1"}}},
		{"remove unknown group", func() error { return s.RemoveGroup("web", nil) }, jobs.ErrNotFound,
			map[string][]string{"db": {"db1"}}},
	}
	for _, st := range steps {
		err := st.do()
		if st.wantErr == nil && err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if st.wantErr != nil && !errors.Is(err, st.wantErr) {
			t.Fatalf("%s: error %v, want %v", st.name, err, st.wantErr)
		}
		if got := groups(t, s); !reflect.DeepEqual(got, st.want) {
			t.Fatalf("%s: groups %v, want %v", st.name, got, st.want)
		}
	}
}

func TestTouchMinions(t *testing.T) {
	s := jobstest.New(t)
	addMinions(t, s, "web1", "web2")
	at := time.Date(2026, 11, 21, 14, 0, 0, 0, time.FixedZone("CET", 3600))
	if err := s.TouchMinions([]string{"web1", "gone"}, at); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchMinions(nil, at); err != nil {
		t.Fatal(err)
	}
	ms, _ := s.Minions()
	if ms[0].LastSeen == nil || !ms[0].LastSeen.Equal(at) || ms[0].LastSeen.Location() != time.UTC {
		t.Errorf("web1 LastSeen = %v, want %v in UTC", ms[0].LastSeen, at)
	}
	if ms[1].LastSeen != nil {
		t.Errorf("web2 LastSeen = %v, want never", ms[1].LastSeen)
	}
	if got := minionNames(t, s); len(got) != 2 {
		t.Errorf("touching an unknown name registered it: %v", got)
	}
}

// Store methods may run from several goroutines at once; each waits its
// turn for the file.
func TestConcurrentWriters(t *testing.T) {
	s := jobstest.New(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.AddMinion(jobs.Minion{Name: fmt.Sprintf("m%02d", i)})
			if _, err := s.Inventory(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := len(minionNames(t, s)); got != 16 {
		t.Errorf("%d minions, want 16", got)
	}
}

// TestCacheFacts: facts replace a registered minion's; a name not
// registered is skipped.
func TestCacheFacts(t *testing.T) {
	s := jobstest.New(t)
	addMinions(t, s, "web1", "web2")
	if err := s.CacheFacts(map[string]map[string]any{"web1": {"os": "debian"}, "gone": {"os": "x"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.CacheFacts(map[string]map[string]any{"web1": {"os": "rhel"}}); err != nil {
		t.Fatal(err)
	}
	ms, _ := s.Minions()
	if len(ms) != 2 || !reflect.DeepEqual(ms[0].Facts, map[string]any{"os": "rhel"}) || ms[1].Facts != nil {
		t.Errorf("registry %+v; want web1 with os rhel, web2 without facts", ms)
	}
}
