package postgres

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	postgresv1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
	"github.com/setpoint-dev/setpoint/controlplane"
	pgop "github.com/setpoint-dev/setpoint/operators/postgres"
	"github.com/setpoint-dev/setpoint/testkit"
)

// F7: brief troubles are not failovers. The API server frozen for 3 s
// (every agent goes silent to the operator, whose reports come through it,
// and no Lease is renewed meanwhile) and the primary's processes frozen
// for 3 s, less than failoverDelay, leave the primary where it is, on its
// timeline, taking writes. make chaos runs many rounds
// (SETPOINT_PG_BLIPS); make test two.
func TestNoFalseFailovers(t *testing.T) {
	ns := setup(t)
	const delay = 8 * time.Second
	c := cluster(ns, "pg", 2)
	c.Spec.FailoverDelay = &metav1.Duration{Duration: delay}
	testkit.Create(t, c)
	waitHealthy(t, ns, "pg", 4*time.Minute)
	mustPsql(t, ns, "pg", "pg-rw", "CREATE TABLE t (id int primary key)")
	api, ok := testkit.Env(t).ControlPlane.Pid(controlplane.KubeAPIServer)
	if !ok {
		t.Fatal("no kube-apiserver process")
	}
	w := watchPrimary(t, ns)
	rounds := testkit.EnvCount(t, "SETPOINT_PG_BLIPS", 2)
	for i := range rounds {
		freeze(t, api, 3*time.Second)
		insert(t, ns, 2*i+1)
		// The fault's length is in the pod's sleep: SIGSTOP, then SIGCONT
		// (a backend may end between pgrep and kill).
		testkit.MustKubectl(t, "-n", ns, "exec", "pg-1", "-c", "postgres", "--", "sh", "-c",
			`p="$(pgrep -x postgres) $(pgrep -f '[p]ostgres-agent run')"; kill -STOP $p 2>/dev/null; sleep 3; kill -CONT $p 2>/dev/null; true`)
		insert(t, ns, 2*i+2)
	}
	// A failover the last fault caused would be decided within this.
	end := w.stop(delay + 5*time.Second)
	t.Logf("%d rounds; the operator saw the primary unhealthy %d times, for at most %s", rounds, end.unhealthy, end.longest)
	survived := 2 * rounds
	if end.moved != "" {
		survived = 0 // which fault caused it is not known
	}
	testkit.ReportChaos(t, testkit.ChaosRow{Fault: "kube-apiserver or PostgreSQL primary frozen 3 s (no failover wanted)", Injected: 2 * rounds, Survived: survived})
	if end.moved != "" {
		t.Fatalf("false failover: %s", end.moved)
	}
	if in := instance(get(t, ns, "pg"), "pg-1"); in.Timeline != 1 || in.Role != "primary" {
		t.Errorf("pg-1: %+v, want the primary on timeline 1", in)
	}
}

// freeze stops process pid for d (SIGSTOP, SIGCONT).
func freeze(t *testing.T, pid int, d time.Duration) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGCONT)
	time.Sleep(d) // the fault itself, not a wait for something
}

func insert(t *testing.T, ns string, id int) {
	t.Helper()
	mustPsql(t, ns, "pg", "pg-rw", fmt.Sprintf("INSERT INTO t VALUES (%d)", id))
}

// primaryWatch follows cluster pg's status twice a second.
type primaryWatch struct {
	end func()
	mu  sync.Mutex
	// moved says how the primary changed, if it did.
	moved     string
	unhealthy int
	longest   time.Duration
}

func watchPrimary(t *testing.T, ns string) *primaryWatch {
	w := &primaryWatch{}
	var since time.Time
	w.end = followStatus(t, ns, 500*time.Millisecond, func(c *postgresv1alpha1.PostgresCluster) {
		w.mu.Lock()
		defer w.mu.Unlock()
		st := c.Status
		if w.moved == "" && (st.TargetPrimary != "pg-1" || st.LastFailover != "" || st.Phase == pgop.PhaseFailingOver) {
			w.moved = fmt.Sprintf("target %s, phase %s, last failover %q", st.TargetPrimary, st.Phase, st.LastFailover)
		}
		switch {
		case st.PrimaryUnhealthySince != nil && since.IsZero():
			since = time.Now()
			w.unhealthy++
		case st.PrimaryUnhealthySince == nil && !since.IsZero():
			w.longest = max(w.longest, time.Since(since))
			since = time.Time{}
		}
	})
	return w
}

// stop watches for window more, then ends and returns what was seen.
func (w *primaryWatch) stop(window time.Duration) *primaryWatch {
	time.Sleep(window) // watching: nothing is to happen in it
	w.end()
	return w
}
