package minion

import (
	"testing"

	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// TestJobOwnerIgnoresCase: a minion knows an identity by its name, and
// "Ops" and "ops" are one name (the CA issues no second certificate for
// it): Status, List and Cancel give the job to both spellings, as the
// access list does, and to no other identity.
func TestJobOwnerIgnoresCase(t *testing.T) {
	a := newAsync(t, t.TempDir())
	defer a.Close()
	j, _, err := a.submit("Ops", &rpc.SubmitParams{OriginJobID: "o1", Module: "command", Method: "run", Args: map[string]any{"cmd": "sleep 30"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"Ops", "ops", "OPS"} {
		st, err := a.status(&rpc.StatusParams{JobIDs: []string{j.ID}}, who)
		if err != nil || st[0].Error != nil && st[0].Error.Kind == status.KindLost {
			t.Errorf("Status as %s: %+v, %v; want the job", who, st, err)
		}
		if js, err := a.list(10, who); err != nil || len(js) != 1 || js[0].JobID != j.ID {
			t.Errorf("List as %s: %+v, %v; want the job", who, js, err)
		}
	}
	for _, who := range []string{"ops2", "op", "other"} {
		st, err := a.status(&rpc.StatusParams{JobIDs: []string{j.ID}}, who)
		if err != nil || st[0].Error == nil || st[0].Error.Kind != status.KindLost {
			t.Errorf("Status as %s: %+v, %v; want lost", who, st, err)
		}
		if js, err := a.list(10, who); err != nil || len(js) != 0 {
			t.Errorf("List as %s: %+v, %v; want none", who, js, err)
		}
		if _, err := a.cancel(j.ID, status.KindCancelled, who); status.KindOf(err) != status.KindLost {
			t.Errorf("Cancel as %s: %v; want lost", who, err)
		}
	}
	if _, err := a.cancel(j.ID, status.KindCancelled, "OPS"); err != nil {
		t.Errorf("Cancel as OPS: %v; want the job cancelled", err)
	}
	if st := waitState(t, a, j.ID, isFinished); st.Error == nil || st.Error.Kind != status.KindCancelled {
		t.Errorf("after Cancel as OPS: %+v; want cancelled", st)
	}
	// The access list compares names with the same function.
	if !sameIdentity("Ops", "oPS") || sameIdentity("ops", "ops2") {
		t.Error("sameIdentity")
	}
}
