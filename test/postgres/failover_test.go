package postgres

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	postgresv1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
	pgop "github.com/setpoint-dev/setpoint/operators/postgres"
	"github.com/setpoint-dev/setpoint/testkit"
)

// A three-instance cluster streams to its replicas; when every process of
// the primary's pod is SIGKILLed a replica is promoted and writes through
// -rw resume; the old primary rejoins as a replica of the new timeline
// with no manual step; a switchover moves the primary back with no
// committed row lost.
func TestFailoverRejoinAndSwitchover(t *testing.T) {
	ns := setup(t)
	testkit.Create(t, cluster(ns, "pg", 3))
	c := waitHealthy(t, ns, "pg", 4*time.Minute)
	if c.Status.CurrentPrimary != "pg-1" {
		t.Fatalf("first primary %q, want pg-1", c.Status.CurrentPrimary)
	}
	mustPsql(t, ns, "pg", "pg-rw", "CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1)")
	// Every replica has it (read through -ro, which only they serve).
	for range 2 {
		testkit.Eventually(t, time.Minute, func() error {
			out, err := psql(t, ns, "pg", "pg-ro", "SELECT count(*) FROM t WHERE NOT pg_is_in_recovery() OR id = 1")
			if err != nil || out != "1" {
				return fmt.Errorf("replica: %q %v", out, err)
			}
			return nil
		})
	}

	// Kill every process of the primary's pod (its sandbox's init stays).
	testkit.MustKubectl(t, "-n", ns, "exec", "pg-1", "-c", "postgres", "--", "sh", "-c", "kill -KILL -1")
	start := time.Now()
	testkit.Eventually(t, time.Minute, func() error {
		_, err := psql(t, ns, "pg", "pg-rw", "INSERT INTO t VALUES (2)")
		return err
	})
	t.Logf("writes through pg-rw resumed %s after the primary's processes were killed", time.Since(start).Round(100*time.Millisecond))
	c = get(t, ns, "pg")
	if c.Status.CurrentPrimary == "pg-1" {
		t.Fatalf("pg-1 is still the primary: %+v", c.Status)
	}
	if got := mustPsql(t, ns, "pg", "pg-rw", "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"); got != "1,2" {
		t.Errorf("rows after the failover: %q, want 1,2", got)
	}
	newPrimary := c.Status.CurrentPrimary
	// The status shows the new primary's own report a poll after the
	// promotion it records.
	var timeline int64
	testkit.Eventually(t, 30*time.Second, func() error {
		if timeline = instance(get(t, ns, "pg"), newPrimary).Timeline; timeline < 2 {
			return fmt.Errorf("new primary %s reported on timeline %d", newPrimary, timeline)
		}
		return nil
	})
	if timeline != 2 {
		t.Errorf("new primary on timeline %d, want 2", timeline)
	}

	// The old primary comes back as a replica on the new timeline.
	testkit.Eventually(t, 90*time.Second, func() error {
		in := instance(get(t, ns, "pg"), "pg-1")
		if in.Role != "replica" || !in.Ready || in.Timeline != timeline {
			return fmt.Errorf("pg-1: %+v", in)
		}
		return nil
	})
	waitHealthy(t, ns, "pg", time.Minute)

	// Switch back to pg-1.
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"pg-1"}}}`, pgop.AnnotationSwitchover)
	if err := testkit.Env(t).Client.Patch(t.Context(), c, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	testkit.Eventually(t, time.Minute, func() error {
		c := get(t, ns, "pg")
		if c.Status.CurrentPrimary != "pg-1" {
			return fmt.Errorf("primary %s, phase %s", c.Status.CurrentPrimary, c.Status.Phase)
		}
		_, err := psql(t, ns, "pg", "pg-rw", "INSERT INTO t VALUES (3)")
		return err
	})
	t.Logf("a write through pg-rw succeeded %s after the switchover was asked for", time.Since(start).Round(100*time.Millisecond))
	if got := mustPsql(t, ns, "pg", "pg-rw", "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"); got != "1,2,3" {
		t.Errorf("rows after the switchover: %q, want 1,2,3", got)
	}
	c = waitHealthy(t, ns, "pg", 2*time.Minute)
	if _, ok := c.Annotations[pgop.AnnotationSwitchover]; ok {
		t.Errorf("the switchover annotation was left on the cluster")
	}
	if in := instance(c, newPrimary); in.Role != "replica" {
		t.Errorf("former primary %s after the switchover: %+v", newPrimary, in)
	}
	if !strings.Contains(c.Status.LastFailover, "switchover") {
		t.Errorf("lastFailover %q does not tell of the switchover", c.Status.LastFailover)
	}
}

func instance(c *postgresv1alpha1.PostgresCluster, name string) postgresv1alpha1.InstanceStatus {
	for _, in := range c.Status.Instances {
		if in.Name == name {
			return in
		}
	}
	return postgresv1alpha1.InstanceStatus{}
}

// The most advanced replica is promoted: with pg-2's WAL receiver
// stopped (SIGSTOP) while rows are written, killing the primary promotes
// pg-3, which has them (and comes after pg-2 by name, so a choice by name
// would fail), on the next timeline; pg-2, resumed, follows it.
func TestTheMostAdvancedReplicaIsPromoted(t *testing.T) {
	ns := setup(t)
	testkit.Create(t, cluster(ns, "pg", 3))
	waitHealthy(t, ns, "pg", 4*time.Minute)
	mustPsql(t, ns, "pg", "pg-rw", "CREATE TABLE t (id int primary key)")
	testkit.MustKubectl(t, "-n", ns, "exec", "pg-2", "-c", "postgres", "--", "pkill", "-STOP", "-f", "walreceiver")
	t.Cleanup(func() {
		_, _ = testkit.Kubectl(t, "", "-n", ns, "exec", "pg-2", "-c", "postgres", "--", "pkill", "-CONT", "-f", "walreceiver")
	})
	mustPsql(t, ns, "pg", "pg-rw", "INSERT INTO t SELECT generate_series(1, 1000)")
	// pg-3 has the rows, pg-2 not (the operator sees it in their LSNs)
	// before the kill.
	testkit.Eventually(t, time.Minute, func() error {
		c := get(t, ns, "pg")
		p, stopped, advanced := instance(c, "pg-1"), instance(c, "pg-2"), instance(c, "pg-3")
		if pgop.ParseLSN(advanced.ReceivedLSN) < pgop.ParseLSN(p.ReceivedLSN) || pgop.ParseLSN(stopped.ReceivedLSN) >= pgop.ParseLSN(advanced.ReceivedLSN) {
			return fmt.Errorf("primary at %s, pg-2 at %s, pg-3 at %s", p.ReceivedLSN, stopped.ReceivedLSN, advanced.ReceivedLSN)
		}
		return nil
	})
	testkit.MustKubectl(t, "-n", ns, "exec", "pg-1", "-c", "postgres", "--", "sh", "-c", "kill -KILL -1")
	testkit.Eventually(t, time.Minute, func() error {
		c := get(t, ns, "pg")
		if c.Status.CurrentPrimary == "pg-1" || c.Status.CurrentPrimary == "" {
			return fmt.Errorf("primary %q", c.Status.CurrentPrimary)
		}
		return nil
	})
	c := get(t, ns, "pg")
	if c.Status.CurrentPrimary != "pg-3" {
		t.Fatalf("%s was promoted; pg-3 had received the most", c.Status.CurrentPrimary)
	}
	if tl := instance(c, "pg-3").Timeline; tl != 2 {
		t.Errorf("timeline %d after one failover, want 2", tl)
	}
	if got := mustPsql(t, ns, "pg", "pg-rw", "SELECT count(*) FROM t"); got != "1000" {
		t.Errorf("rows on the new primary: %s, want 1000", got)
	}
	testkit.MustKubectl(t, "-n", ns, "exec", "pg-2", "-c", "postgres", "--", "pkill", "-CONT", "-f", "walreceiver")
	c = waitHealthy(t, ns, "pg", 2*time.Minute)
	// Rewound, not cloned again: its killed postgres left a
	// postmaster.pid whose PID a process of the restarted container may
	// hold, and pg_rewind's recovery refused to start over it.
	if n := instance(c, "pg-1").Recloned; n != 0 {
		t.Errorf("the killed primary was cloned again (%d), not rewound", n)
	}
	if got := mustPsql(t, ns, "pg", "pg-ro", "SELECT count(*) FROM t"); got != "1000" {
		t.Errorf("rows on a replica: %s, want 1000", got)
	}
}
