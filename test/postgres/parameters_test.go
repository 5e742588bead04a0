package postgres

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/setpoint-dev/setpoint/testkit"
)

// A parameter that needs a restart reaches every instance: the replicas
// restart on their own, then the primary hands over to one of them and
// restarts as a replica. A reloadable one is reloaded, with no restart.
func TestParametersReachEveryInstance(t *testing.T) {
	ns := setup(t)
	testkit.Create(t, cluster(ns, "pg", 2))
	waitHealthy(t, ns, "pg", 4*time.Minute)
	mustPsql(t, ns, "pg", "pg-rw", "CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1)")

	set := func(params string) {
		patch := fmt.Sprintf(`{"spec":{"postgresql":{"parameters":%s}}}`, params)
		c := get(t, ns, "pg")
		if err := testkit.Env(t).Client.Patch(t.Context(), c, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			t.Fatal(err)
		}
	}
	shows := func(host, setting, want string) {
		t.Helper()
		testkit.Eventually(t, 2*time.Minute, func() error {
			got, err := psql(t, ns, "pg", host, "SHOW "+setting)
			if err != nil || got != want {
				return fmt.Errorf("%s on %s: %q %v, want %q", setting, host, got, err, want)
			}
			return nil
		})
	}
	set(`{"work_mem":"7MB"}`)
	shows("pg-rw", "work_mem", "7MB")
	shows("pg-ro", "work_mem", "7MB")
	if p := get(t, ns, "pg").Status.CurrentPrimary; p != "pg-1" {
		t.Errorf("a reloadable parameter moved the primary to %s", p)
	}

	set(`{"work_mem":"7MB","max_connections":"120"}`)
	shows("pg-ro", "max_connections", "120")
	shows("pg-rw", "max_connections", "120")
	c := waitHealthy(t, ns, "pg", 2*time.Minute)
	if c.Status.CurrentPrimary != "pg-2" {
		t.Errorf("primary %s: want pg-2, switched to after the replica restarted", c.Status.CurrentPrimary)
	}
	for _, in := range c.Status.Instances {
		if len(in.PendingRestart) > 0 {
			t.Errorf("%s still waits for a restart: %v", in.Name, in.PendingRestart)
		}
	}
	if got := mustPsql(t, ns, "pg", "pg-rw", "SELECT count(*) FROM t"); got != "1" {
		t.Errorf("rows: %s", got)
	}
}
