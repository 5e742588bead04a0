package postgres

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
)

func TestPod(t *testing.T) {
	c := pgCluster(3, primaryIs("pg-2"), func(c *v1alpha1.PostgresCluster) {
		c.Spec.Tolerations = []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}}
	})
	for _, tc := range []struct {
		instance, role string
	}{{"pg-1", RoleReplica}, {"pg-2", RolePrimary}} {
		p := Pod(c, tc.instance, "example/setpoint:1")
		if p.Name != tc.instance || p.Labels[LabelRole] != tc.role || p.Labels[LabelInstance] != tc.instance {
			t.Errorf("%s: name %s labels %v", tc.instance, p.Name, p.Labels)
		}
		if got := p.Spec.Volumes[0].PersistentVolumeClaim.ClaimName; got != tc.instance {
			t.Errorf("%s: claim %s", tc.instance, got)
		}
		if p.Spec.InitContainers[0].Image != "example/setpoint:1" || p.Spec.Containers[0].Image != "postgres:15" {
			t.Errorf("%s: images %s, %s", tc.instance, p.Spec.InitContainers[0].Image, p.Spec.Containers[0].Image)
		}
		if len(p.Spec.Tolerations) != 1 || p.Spec.Affinity.PodAntiAffinity == nil {
			t.Errorf("%s: placement %+v %+v", tc.instance, p.Spec.Tolerations, p.Spec.Affinity)
		}
		for _, e := range p.Spec.Containers[0].Env {
			if e.Value != "" && (e.Name == "SUPERUSER_PASSWORD" || e.Name == "REPLICATION_PASSWORD" || e.Name == "APP_PASSWORD") {
				t.Errorf("%s: password %s as a literal value", tc.instance, e.Name)
			}
		}
	}
}

func TestServicesFollowRoles(t *testing.T) {
	c := pgCluster(2)
	want := map[string]map[string]string{
		"pg-rw": {LabelCluster: "pg", LabelRole: RolePrimary},
		"pg-ro": {LabelCluster: "pg", LabelRole: RoleReplica},
		"pg-r":  {LabelCluster: "pg"},
	}
	for _, s := range Services(c) {
		if len(s.Spec.Selector) != len(want[s.Name]) {
			t.Errorf("%s selects %v, want %v", s.Name, s.Spec.Selector, want[s.Name])
		}
		for k, v := range want[s.Name] {
			if s.Spec.Selector[k] != v {
				t.Errorf("%s selects %v, want %v", s.Name, s.Spec.Selector, want[s.Name])
			}
		}
	}
}

func TestPodDisruptionBudgets(t *testing.T) {
	if pdbs := PodDisruptionBudgets(pgCluster(1)); pdbs != nil {
		t.Errorf("a single instance gets a PDB, which would block the drain of its node: %+v", pdbs)
	}
	pdbs := PodDisruptionBudgets(pgCluster(3))
	if len(pdbs) != 2 {
		t.Fatalf("three instances: %d PDBs", len(pdbs))
	}
	primary, replicas := pdbs[0], pdbs[1]
	if primary.Spec.MinAvailable.IntValue() != 1 || primary.Spec.Selector.MatchLabels[LabelRole] != RolePrimary {
		t.Errorf("the primary's PDB %+v lets a drain evict it before a switchover", primary.Spec)
	}
	if replicas.Spec.MinAvailable.IntValue() != 1 || replicas.Spec.Selector.MatchLabels[LabelRole] != RoleReplica {
		t.Errorf("the replicas' PDB %+v", replicas.Spec)
	}
}

func TestClaim(t *testing.T) {
	size := resource.MustParse("5Gi")
	class := "fast"
	c := pgCluster(1, func(c *v1alpha1.PostgresCluster) {
		c.Spec.Storage = v1alpha1.StorageSpec{Size: &size, StorageClassName: &class}
	})
	pvc := Claim(c, "pg-1")
	if got := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; got.Cmp(size) != 0 || *pvc.Spec.StorageClassName != "fast" {
		t.Errorf("claim %+v", pvc.Spec)
	}
	if got := Claim(pgCluster(1), "pg-1").Spec.Resources.Requests[corev1.ResourceStorage]; got.String() != "1Gi" {
		t.Errorf("default size %s", got.String())
	}
}

func TestAgentRBACIsNarrow(t *testing.T) {
	_, role, rb := AgentRBAC(pgCluster(1))
	for _, r := range role.Rules {
		if len(r.ResourceNames) == 0 && !(len(r.Verbs) == 1 && r.Verbs[0] == "create") {
			t.Errorf("rule %+v is not limited to the cluster's own objects", r)
		}
		for _, res := range r.Resources {
			if res == "secrets" || res == "pods" {
				t.Errorf("the agents may reach %s", res)
			}
		}
	}
	if rb.RoleRef.Name != role.Name || rb.Subjects[0].Name != "pg-agent" {
		t.Errorf("binding %+v", rb)
	}
}
