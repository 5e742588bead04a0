package postgres

import (
	"fmt"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/setpoint-dev/setpoint/operators/postgres/agent"
	"github.com/setpoint-dev/setpoint/testkit"
)

// A primary that can no longer renew its Lease (here someone else holds
// it, as after a partition from the API server) stops taking commits
// within the renew deadline, on its open sessions too; a replica is
// promoted once the Lease is free, and the old primary rejoins.
func TestPrimaryWithoutItsLeaseStopsTakingWrites(t *testing.T) {
	ns := setup(t)
	testkit.Create(t, cluster(ns, "pg", 2))
	waitHealthy(t, ns, "pg", 4*time.Minute)
	mustPsql(t, ns, "pg", "pg-rw", "CREATE TABLE t (id int primary key)")
	primaryIP := pod(t, ns, "pg-1").Status.PodIP
	mustPsql(t, ns, "pg", primaryIP, "SELECT 1") // reachable by its address

	stolen := steal(t, ns, agent.LeaseName("pg"))
	var refused time.Duration
	id := 0
	testkit.Eventually(t, 30*time.Second, func() error {
		id++
		if _, err := psql(t, ns, "pg", primaryIP, fmt.Sprintf("INSERT INTO t VALUES (%d)", id)); err == nil {
			return fmt.Errorf("pg-1 still takes writes %s after losing its Lease", time.Since(stolen).Round(100*time.Millisecond))
		}
		refused = time.Since(stolen)
		return nil
	})
	t.Logf("pg-1 refused writes %s after its Lease was taken", refused.Round(100*time.Millisecond))
	if limit := agent.DefaultRenewDeadline + 2*time.Second; refused > limit {
		t.Errorf("pg-1 took writes for %s without its Lease; the limit is the renew deadline + 2 s = %s", refused, limit)
	}

	// The intruder's Lease expires; pg-2 takes over and pg-1 follows it.
	testkit.Eventually(t, 90*time.Second, func() error {
		_, err := psql(t, ns, "pg", "pg-rw", "INSERT INTO t VALUES (0)")
		return err
	})
	// Not before: nobody may empty a Lease it does not hold (a fenced
	// primary's release once did, and the new primary's own check then
	// fenced it too).
	took := time.Since(stolen)
	if took < stealDuration {
		t.Errorf("pg-2 took writes %s after the Lease was given to another for %s", took.Round(100*time.Millisecond), stealDuration)
	}
	c := waitHealthy(t, ns, "pg", 2*time.Minute)
	// One rewind did it: right after a promotion the new primary's
	// control file still names the old timeline, and a rewind from it
	// then did nothing (the standby could not follow, and was rewound
	// again 15 s later).
	if logs := testkit.MustKubectl(t, "-n", ns, "logs", "pg-1", "-c", "postgres", "--tail=-1"); strings.Contains(logs, "cannot follow the primary's timeline") {
		t.Errorf("pg-1 needed a second rewind to follow pg-2")
	}
	t.Logf("pg-2 took writes %s after the steal; the cluster was healthy %s after", took.Round(100*time.Millisecond), time.Since(stolen).Round(100*time.Millisecond))
	if c.Status.CurrentPrimary != "pg-2" {
		t.Errorf("primary %s, want pg-2", c.Status.CurrentPrimary)
	}
	// Asynchronous replication: of pg-1's last commits, those pg-2 had
	// not received are gone; the one written after the failover is there.
	if got := mustPsql(t, ns, "pg", "pg-rw", "SELECT count(*) FROM t WHERE id = 0"); got != "1" {
		t.Errorf("the row written after the failover: %q", got)
	}
}

// With the operator stopped the cluster keeps serving: the primary's
// agent renews its own Lease, and a primary whose processes all die comes
// back as primary on its own data (no failover, which needs the
// operator).
func TestClusterServesWithoutTheOperator(t *testing.T) {
	ns, stop := setupWithStop(t)
	testkit.Create(t, cluster(ns, "pg", 2))
	waitHealthy(t, ns, "pg", 4*time.Minute)
	mustPsql(t, ns, "pg", "pg-rw", "CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1)")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Longer than the Lease: only the agent's renewals keep pg-1 primary.
	deadline := time.Now().Add(agent.DefaultLeaseDuration + 5*time.Second)
	for i := 2; time.Now().Before(deadline); i++ {
		mustPsql(t, ns, "pg", "pg-rw", fmt.Sprintf("INSERT INTO t VALUES (%d)", i))
	}
	testkit.MustKubectl(t, "-n", ns, "exec", "pg-1", "-c", "postgres", "--", "sh", "-c", "kill -KILL -1")
	testkit.Eventually(t, time.Minute, func() error {
		_, err := psql(t, ns, "pg", "pg-rw", "INSERT INTO t VALUES (0)")
		return err
	})
	if got := get(t, ns, "pg").Status.TargetPrimary; got != "pg-1" {
		t.Errorf("target primary changed to %s with no operator", got)
	}
}

func pod(t testing.TB, ns, name string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{}
	if err := testkit.Env(t).Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// stealDuration is the intruder's Lease duration.
const stealDuration = 15 * time.Second

// steal makes "intruder" the Lease's holder, renewed now.
func steal(t testing.TB, ns, name string) time.Time {
	t.Helper()
	var at time.Time
	testkit.Eventually(t, 30*time.Second, func() error {
		l := &coordinationv1.Lease{}
		if err := testkit.Env(t).Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, l); err != nil {
			return err
		}
		at = time.Now()
		l.Spec.HolderIdentity = ptr.To("intruder")
		l.Spec.RenewTime = &metav1.MicroTime{Time: at}
		l.Spec.AcquireTime = &metav1.MicroTime{Time: at}
		l.Spec.LeaseDurationSeconds = ptr.To(int32(stealDuration / time.Second))
		return testkit.Env(t).Client.Update(t.Context(), l)
	})
	return at
}

// A primary whose agent cannot reach the Lease at all (its permission
// taken away, as a partition would) stops taking commits within the
// renew deadline of its last renewal. The operator is stopped first, so
// it cannot put the agents' RoleBinding back.
func TestPrimaryCutOffFromTheLeaseStops(t *testing.T) {
	ns, stop := setupWithStop(t)
	testkit.Create(t, cluster(ns, "pg", 1))
	waitHealthy(t, ns, "pg", 4*time.Minute)
	mustPsql(t, ns, "pg", "pg-rw", "CREATE TABLE t (id int primary key)")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pg-agent"}}
	if err := testkit.Env(t).Client.Delete(t.Context(), rb); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	var refused time.Duration
	id := 0
	testkit.Eventually(t, 30*time.Second, func() error {
		id++
		if _, err := psql(t, ns, "pg", "pg-rw", fmt.Sprintf("INSERT INTO t VALUES (%d)", id)); err == nil {
			return fmt.Errorf("pg-1 still takes writes %s after it lost access to its Lease", time.Since(cut).Round(100*time.Millisecond))
		}
		refused = time.Since(cut)
		return nil
	})
	// Measured from its last renewal, which may come just after the cut
	// (the authorizer's cache follows the RoleBinding's deletion).
	l := &coordinationv1.Lease{}
	if err := testkit.Env(t).Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: agent.LeaseName("pg")}, l); err != nil {
		t.Fatal(err)
	}
	sinceRenewal := cut.Add(refused).Sub(l.Spec.RenewTime.Time)
	t.Logf("pg-1 refused writes %s after it lost access to its Lease, %s after its last renewal", refused.Round(100*time.Millisecond), sinceRenewal.Round(100*time.Millisecond))
	if limit := agent.DefaultRenewDeadline + 2*time.Second; sinceRenewal > limit {
		t.Errorf("pg-1 took writes %s after its last renewal; the limit is the renew deadline + 2 s = %s", sinceRenewal, limit)
	}
}
