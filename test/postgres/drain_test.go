package postgres

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	pgop "github.com/setpoint-dev/setpoint/operators/postgres"
	"github.com/setpoint-dev/setpoint/testkit"
)

// `kubectl drain` of the primary's node switches over first (the
// primary's PDB holds its eviction back until the operator, seeing the
// node cordoned, has moved the primary), then evicts the pod, which comes
// back as a replica on another node; no committed row is lost.
func TestDrainOfThePrimarysNodeSwitchesOver(t *testing.T) {
	ns := setup(t)
	c := cluster(ns, "pg", 2)
	c.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
		TopologyKey: corev1.LabelHostname, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{pgop.LabelCluster: "pg"}}}}}}
	testkit.Create(t, c)
	waitHealthy(t, ns, "pg", 4*time.Minute)
	mustPsql(t, ns, "pg", "pg-rw", "CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1)")
	node := pod(t, ns, "pg-1").Spec.NodeName
	t.Cleanup(func() { _, _ = testkit.Kubectl(t, "", "uncordon", node) })

	start := time.Now()
	testkit.MustKubectl(t, "drain", node, "--pod-selector="+pgop.LabelCluster+"=pg", "--ignore-daemonsets",
		"--delete-emptydir-data", "--timeout=120s")
	t.Logf("the drain of %s took %s", node, time.Since(start).Round(100*time.Millisecond))
	mustPsql(t, ns, "pg", "pg-rw", "INSERT INTO t VALUES (2)")
	c = waitHealthy(t, ns, "pg", 2*time.Minute)
	if c.Status.CurrentPrimary != "pg-2" {
		t.Errorf("primary %s after the drain, want pg-2", c.Status.CurrentPrimary)
	}
	if n := pod(t, ns, "pg-1").Spec.NodeName; n == node {
		t.Errorf("pg-1 is back on the drained node %s", n)
	}
	if got := mustPsql(t, ns, "pg", "pg-rw", "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"); got != "1,2" {
		t.Errorf("rows %q, want 1,2", got)
	}
}
