package overlord_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/overlordhq/overlord/certs"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

// busyLog is a slog handler that passes on the messages about a busy
// store.
type busyLog chan string

func (h busyLog) Enabled(context.Context, slog.Level) bool { return true }
func (h busyLog) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "busy") {
		select {
		case h <- r.Message:
		default:
		}
	}
	return nil
}
func (h busyLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h busyLog) WithGroup(string) slog.Handler      { return h }

// TestDriveWaitsForABusyStore: a driver that finds overlord.db held by
// another process for several times the lock timeout, whether for its
// reads (an exclusive lock) or only its writes (a shared one), waits and
// then records the job's end; it does not exit with the job open. The
// job is past its deadline, so that the driver's whole run is store
// work: its end must be recorded all the same.
func TestDriveWaitsForABusyStore(t *testing.T) {
	for _, tc := range []struct {
		name     string
		readOnly bool // the lock held: shared (writes wait) or exclusive
	}{{"writes", true}, {"reads and writes", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const lockTimeout = 100 * time.Millisecond
			busy := make(busyLog, 100)
			o := overlord.New(filepath.Join(t.TempDir(), "state"), "", lockTimeout, slog.New(busy))
			if _, err := o.InitCA("op", certs.ECDSA); err != nil {
				t.Fatal(err)
			}
			addDeadMinion(t, o, "web1")
			past := time.Now().Add(-time.Second).UTC()
			rec := &jobs.Record{Target: "web1", Module: "test", Method: "ping", Async: true, Forks: 1,
				TimeoutMS: 1000, Deadline: &past, Caller: "op"}
			if err := o.Store.CreateJob(rec, []string{"web1"}); err != nil {
				t.Fatal(err)
			}

			db, err := bolt.Open(o.Store.Path(), 0o600, &bolt.Options{ReadOnly: tc.readOnly, Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			held := true
			defer func() {
				if held {
					db.Close()
				}
			}()
			done := make(chan error, 1)
			go func() { done <- o.Drive(context.Background(), rec.ID, nil) }()
			// Three waits of the lock timeout in vain, and the driver is
			// still there.
			for i := range 3 {
				select {
				case <-busy:
				case err := <-done:
					t.Fatalf("the driver returned (%v) with overlord.db busy after %d waits, and the job open", err, i)
				case <-time.After(time.Minute):
					t.Fatalf("no word of a busy store from the driver after %d waits", i)
				}
			}
			db.Close()
			held = false
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Drive: %v", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("the driver did not finish a minute after the store was free")
			}
			got, entries, err := o.Store.Job(rec.ID)
			if err != nil {
				t.Fatal(err)
			}
			e := entries["web1"]
			if got.State != status.Finished || e.State != status.Finished || e.Error == nil || e.Error.Kind != status.KindTimeout {
				t.Errorf("job %s, web1 %+v; want FINISHED with web1 timed out", got.State, e)
			}
		})
	}
}
