package install

import (
	"testing"

	"github.com/setpoint-dev/setpoint/testkit"
)

// `helm install` of charts/setpoint with only the Celery operator
// switched on applies cleanly and grants only what that operator needs:
// it reads broker Secrets one by one and may not list the cluster's
// Secrets, nor touch Apps or StatefulSets. Run as its ServiceAccount, the
// operator reads its broker with no request refused.
func TestHelmInstallCeleryOnly(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	objs := render(t, "helm", "template", "sp", "../../charts/setpoint", "--namespace", ns,
		"--set", "operators.app.enabled=false", "--set", "operators.reloader.enabled=false", "--set", "operators.postgres.enabled=false")
	checkManager(t, find(t, objs, "Deployment", "sp"), "celery")
	for _, u := range objs {
		if u.GetKind() == "CustomResourceDefinition" && u.GetName() != "celeryclusters.celery.setpoint.dev" {
			t.Errorf("CRD %s installed with its operator switched off", u.GetName())
		}
		if u.GetKind() == "CustomResourceDefinition" && u.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
			t.Errorf("CRD %s would be deleted with the release, and every object of it", u.GetName())
		}
	}
	apply(t, objs)

	sa := serviceAccount(ns, "sp")
	checkAccess(t, sa, []access{
		{"watch", "celery.setpoint.dev/celeryclusters", ""},
		{"patch", "celery.setpoint.dev/celeryclusters/status", ""},
		{"create", "apps/deployments", "default"},
		{"get", "/secrets", "default"},
		{"create", "/secrets", ns},
		{"update", "coordination.k8s.io/leases", ns},
	}, []access{
		{"list", "/secrets", ""},
		{"watch", "/secrets", ""},
		{"list", "/secrets", "default"},
		{"list", "apps.setpoint.dev/apps", ""},
		{"patch", "apps/statefulsets", "default"},
		{"list", "/configmaps", ""},
		{"delete", "/namespaces", ""},
		{"create", "rbac.authorization.k8s.io/rolebindings", ns},
	})

	refused := runAs(t, sa, ns, "sp-webhook-cert", nil, "celery")
	work := testkit.Env(t).Namespace(t)
	redis := startRedis(t)
	testkit.Create(t, secret(work, "broker", map[string]string{"url": redis.URL}))
	cc := brokerCluster(work, "tasks", "broker")
	testkit.Create(t, cc)
	waitBrokerReachable(t, cc)
	refused.Check(t)
}
