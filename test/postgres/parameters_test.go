package postgres

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	pgop "github.com/setpoint-dev/setpoint/operators/postgres"
	"github.com/setpoint-dev/setpoint/testkit"
)

// A parameter that needs a restart reaches every instance: the replicas
// restart on their own, then the primary hands over to one of them and
// restarts as a replica. A reloadable one is reloaded, with no restart.
// A new image rolls the same way, under writes (rollImage).
func TestParametersAndImagesReachEveryInstance(t *testing.T) {
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
	rollImage(t, ns)
}

// rollImage changes the image of cluster pg (two instances, pg-2
// primary) under writes: each postgres container restarts once, the
// primary moves by a switchover, and no acknowledged commit is lost.
func rollImage(t *testing.T, ns string) {
	const image = "postgres:15-rolled" // process nodes run the host's postgres whatever the image
	restarts := func() map[string]int32 {
		out := map[string]int32{}
		for _, n := range []string{"pg-1", "pg-2"} {
			for _, cs := range pod(t, ns, n).Status.ContainerStatuses {
				if cs.Name == "postgres" {
					out[n] = cs.RestartCount
				}
			}
		}
		return out
	}
	before := restarts()
	mustPsql(t, ns, "pg", "pg-rw", "CREATE TABLE acked (id int primary key)")
	acked := writeAndWaitForARow(t, ns, "pg", inserts)
	c := get(t, ns, "pg")
	patch := fmt.Sprintf(`{"spec":{"imageName":%q}}`, image)
	if err := testkit.Env(t).Client.Patch(t.Context(), c, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatalf("a new image is refused: %v", err)
	}
	testkit.Eventually(t, 3*time.Minute, func() error {
		c = get(t, ns, "pg")
		for _, in := range c.Status.Instances {
			if in.Image != image || !in.Ready {
				return fmt.Errorf("%s on %q, ready %v (phase %s, rolling %+v)", in.Name, in.Image, in.Ready, c.Status.Phase, c.Status.RollingUpdate)
			}
		}
		if c.Status.Phase != pgop.PhaseHealthy || c.Status.RollingUpdate != nil {
			return fmt.Errorf("phase %s, rolling %+v", c.Status.Phase, c.Status.RollingUpdate)
		}
		return nil
	})
	var sent []int
	select {
	case sent = <-acked:
	case <-time.After(3 * time.Minute):
		t.Fatal("the writer did not finish")
	}
	if c.Status.CurrentPrimary != "pg-1" {
		t.Errorf("primary %s, want pg-1 (the updated replica the primary hands over to)", c.Status.CurrentPrimary)
	}
	testkit.WaitEvent(t, c, "switchover from pg-2 to pg-1 to move the primary to image "+image, 10*time.Second)
	after := restarts()
	for _, n := range []string{"pg-1", "pg-2"} {
		if img := pgop.InstanceImage(c, n); pod(t, ns, n).Spec.Containers[0].Image != img || img != image {
			t.Errorf("%s's pod runs %s", n, pod(t, ns, n).Spec.Containers[0].Image)
		}
		if after[n] != before[n]+1 {
			t.Errorf("%s's postgres container restarted %d times, want once", n, after[n]-before[n])
		}
	}
	stored := ids(mustPsql(t, ns, "pg", "pg-rw", "SELECT id FROM acked ORDER BY id"))
	t.Logf("%d of %d inserts acknowledged during the rolling update, %d stored", len(sent), inserts, len(stored))
	if lost := missing(sent, stored); len(lost) > 0 {
		t.Errorf("acknowledged but lost in the rolling update: %v", lost)
	}
}
