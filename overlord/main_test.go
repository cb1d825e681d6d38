package overlord_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/overlordhq/overlord/minion"
	"github.com/overlordhq/overlord/modules/builtin"
)

// runnerArg makes the test binary an async job's runner, for the
// in-process minions that run async jobs (flakyMinion): started as
// [binary runnerArg SPOOLDIR], it runs the job instead of the tests.
const runnerArg = "overlord-test-run-job"

func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == runnerArg {
		if err := minion.RunJob(os.Args[2], builtin.Registry()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
