package minion

import (
	"encoding/json"
	"testing"

	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// jsonSize counts an entry's result without encoding it again; what it
// counts is what the reply's JSON holds.
func TestJSONSizeCountsTheResult(t *testing.T) {
	for _, st := range []rpc.JobStatus{
		{JobID: "j1", State: status.Running},
		{JobID: "j2", State: status.Finished, OK: true, Result: json.RawMessage(`{"stdout":"\u003c\u003e","exit_code":0}`)},
		{JobID: "j3", State: status.Finished, Result: json.RawMessage(`"x"`), Error: status.Errorf(status.KindModuleError, "exit <1>"), Output: "a\x00b"},
	} {
		data, err := json.Marshal(&st)
		if err != nil {
			t.Fatal(err)
		}
		if got := jsonSize(&st); got != len(data) {
			t.Errorf("jsonSize of %s: %d, want %d", data, got, len(data))
		}
	}
}
