package jobs_test

import (
	"testing"

	"github.com/overlordhq/overlord/internal/etcdtest"
	"github.com/overlordhq/overlord/jobs/jobstest"
)

// TestOnEtcd runs the store's tests on an etcd store (an in-process
// cluster of one member, each test under a prefix of its own), all but
// those about the bbolt file itself (its lock, its bytes).
func TestOnEtcd(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.FreePorts(t, 2))
	defer jobstest.UseEtcd(c.Endpoints)()
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"Census", TestCensus},
		{"DescribesMethod", TestDescribesMethod},
		{"TokenStore", TestTokenStore},
		{"EnrolTx", TestEnrolTx},
		{"Revoke", TestRevoke},
		{"InventoryVersions", TestInventoryVersions},
		{"InventoryRefusesAndChangesNothing", TestInventoryRefusesAndChangesNothing},
		{"InventoryKeepRemembered", TestInventoryKeepRemembered},
		{"CreateJob", TestCreateJob},
		{"CreateJobNoMinions", TestCreateJobNoMinions},
		{"WriteKeepsSummary", TestWriteKeepsSummary},
		{"WriteMutate", TestWriteMutate},
		{"WriteIsAtomic", TestWriteIsAtomic},
		{"WriteTouchesMinions", TestWriteTouchesMinions},
		{"CreateJobDuplicateMinions", TestCreateJobDuplicateMinions},
		{"ListJobs", TestListJobs},
		{"JobByPrefix", TestJobByPrefix},
		{"LargeJob", TestLargeJob},
		{"CreateJobBatched", TestCreateJobBatched},
		{"Minions", TestMinions},
		{"RemoveMinionDropsFromGroups", TestRemoveMinionDropsFromGroups},
		{"Groups", TestGroups},
		{"TouchMinions", TestTouchMinions},
		{"ConcurrentWriters", TestConcurrentWriters},
		{"CacheFacts", TestCacheFacts},
	} {
		t.Run(tc.name, tc.fn)
	}
}
