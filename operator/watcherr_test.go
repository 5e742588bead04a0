package operator_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// A watched kind whose list and watch are revoked makes the operator
// unready within 30 s, with an Event and a log line naming the kind; the
// rule given back makes it ready again with no restart (#17, item 4).
func TestRevokedWatchMakesTheOperatorUnready(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	rules := func(configMapVerbs ...string) []rbacv1.PolicyRule {
		return []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: configMapVerbs},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
			{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
		}
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "op", Namespace: ns}, Rules: rules("get", "list", "watch", "patch", "update")}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "op", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "op"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "op", Namespace: ns}}}
	testkit.Create(t, role, binding)

	o := opts(ns)
	addr := testkit.FreeAddr(t)
	o.ProbeAddr = addr
	o.LeaderElection = &operator.LeaderElection{Namespace: ns}
	start(t, testkit.Impersonate(env.Config, ns, "op"), o, func(op *operator.Operator) {
		operator.Watch[*corev1.ConfigMap](op).OnEvent(func(context.Context, operator.Event[*corev1.ConfigMap]) error { return nil })
	})
	readyz := func() (string, bool) {
		body, err := testkit.HTTPGet("http://" + addr + "/readyz?verbose")
		return body + fmt.Sprint(err), err == nil
	}
	testkit.Eventually(t, time.Minute, func() error {
		if body, ok := readyz(); !ok {
			return fmt.Errorf("not ready: %s", body)
		}
		return nil
	})

	setRules := func(r []rbacv1.PolicyRule) {
		t.Helper()
		current := &rbacv1.Role{}
		if err := env.Client.Get(t.Context(), clientKeyOf(ns, "op"), current); err != nil {
			t.Fatal(err)
		}
		current.Rules = r
		if err := env.Client.Update(t.Context(), current); err != nil {
			t.Fatal(err)
		}
	}
	setRules(rules("get", "patch", "update"))
	revoked := time.Now()
	// (controller-runtime's /readyz withholds the reasons: the Event and
	// the log carry them.)
	testkit.Eventually(t, 40*time.Second, func() error {
		if body, ok := readyz(); ok || !strings.Contains(body, "watches failed") {
			return fmt.Errorf("readyz: %s", body)
		}
		return nil
	})
	t.Logf("unready %s after the revocation", time.Since(revoked).Round(time.Second))
	if took := time.Since(revoked); took > 30*time.Second {
		t.Errorf("unready only %s after the revocation, want within 30 s", took)
	}
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: ns}}
	lease.APIVersion, lease.Kind = "coordination.k8s.io/v1", "Lease"
	if err := env.Client.Get(t.Context(), clientKeyOf(ns, o.Name), lease); err != nil {
		t.Fatal(err)
	}
	testkit.WaitEvent(t, lease, "the cache of ConfigMap is no longer kept up to date", 10*time.Second)

	setRules(rules("get", "list", "watch", "patch", "update"))
	testkit.Eventually(t, time.Minute, func() error {
		if body, ok := readyz(); !ok {
			return fmt.Errorf("not ready again: %s", body)
		}
		return nil
	})
}
