package install

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/testkit"
)

// TestHelmInstallWatchingNamespaces: a release with watchNamespaces gets
// Roles in those namespaces and only the cluster-wide rules it cannot do
// without. As its ServiceAccount, the impersonation table's actions
// outside its namespaces and beyond its needs are denied, while every
// operator works end to end in a watched namespace with no request
// refused. The manager's pod starts in a namespace that enforces the
// restricted Pod Security Standard, and after the uninstall no leftover
// webhook refuses an App.
func TestHelmInstallWatchingNamespaces(t *testing.T) {
	env := testkit.Env(t)
	ns, watched, other := env.Namespace(t), env.Namespace(t), env.Namespace(t)
	restrict(t, ns)
	objs := render(t, "helm", "template", "team", "../../charts/setpoint", "--namespace", ns,
		"--set", "watchNamespaces={"+watched+"}", "--set", "replicas=1")
	for _, u := range objs {
		if (u.GetKind() == "ClusterRole" || u.GetKind() == "ClusterRoleBinding") && u.GetName() != "team-cluster" {
			t.Errorf("%s %s with watchNamespaces set", u.GetKind(), u.GetName())
		}
	}
	apply(t, objs)
	waitManagerPod(t, ns)

	sa := serviceAccount(ns, "team")
	checkAccess(t, sa, []access{
		{"watch", "apps.setpoint.dev/apps", watched},
		{"patch", "apps.setpoint.dev/apps/status", watched},
		{"create", "apps/deployments", watched},
		{"list", "/secrets", watched},
		{"patch", "apps/daemonsets", watched},
		{"create", "/events", watched},
		{"update", "coordination.k8s.io/leases", ns},
		{"create", "/secrets", ns},
		{"patch", "admissionregistration.k8s.io/validatingwebhookconfigurations@team", ""},
		{"create", "authorization.k8s.io/subjectaccessreviews", ""},
	}, deniedOutside(watched, other))

	refused := runAs(t, sa, ns, "team-webhook-cert", []string{watched}, "app", "celery", "reloader")
	redis := startRedis(t)
	testkit.Create(t, secret(watched, "broker", map[string]string{"url": redis.URL}))
	a := &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Namespace: watched, Name: "web"},
		Spec:       appsv1alpha1.AppSpec{Image: "example/web:1", Processes: []appsv1alpha1.Process{{Name: "web"}}, Routes: []appsv1alpha1.Route{{Host: "web.example.com"}}},
	}
	c := env.Client
	bad := a.DeepCopy()
	bad.Name = "bad"
	bad.Spec.Processes[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}
	bad.Spec.Processes[0].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}
	testkit.Eventually(t, wait, func() error {
		err := c.Create(t.Context(), bad.DeepCopy(), client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), "must be less than or equal to cpu limit") {
			return fmt.Errorf("an App whose Deployment is invalid: %v, want refused by the webhook", err)
		}
		return nil
	})
	testkit.Create(t, a, brokerCluster(watched, "tasks", "broker"))
	waitAppReady(t, a)
	waitBrokerReachable(t, brokerCluster(watched, "tasks", "broker"))
	refused.Check(t)

	// Uninstall: everything helm would delete goes (the CRDs stay, as
	// their resource policy says); no webhook configuration is left.
	uninstall(t, objs)
	for _, obj := range []client.Object{&admissionregistrationv1.ValidatingWebhookConfiguration{}, &admissionregistrationv1.MutatingWebhookConfiguration{}} {
		obj.SetName("team")
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(obj), obj); !apierrors.IsNotFound(err) {
			t.Errorf("%T team after the uninstall: %v", obj, err)
		}
	}
	late := bad.DeepCopy()
	late.Name = "after-uninstall"
	if err := c.Create(t.Context(), late); err != nil {
		t.Errorf("an App create after the uninstall: %v", err)
	}
}

// deniedOutside is the impersonation table: what the install's account
// must not do, with the watched namespace and another one.
func deniedOutside(watched, other string) []access {
	return []access{
		{"list", "/secrets", "kube-system"},
		{"get", "/secrets", "kube-system"},
		{"list", "/secrets", ""},
		{"list", "/secrets", other},
		{"watch", "/configmaps", other},
		{"patch", "apps/daemonsets", "kube-system"},
		{"patch", "apps/deployments", "kube-system"},
		{"create", "apps/deployments", other},
		{"delete", "/services", other},
		{"create", "networking.k8s.io/ingresses", other},
		{"list", "apps.setpoint.dev/apps", ""},
		{"list", "apps.setpoint.dev/apps", other},
		{"patch", "apps.setpoint.dev/apps/status", other},
		{"watch", "celery.setpoint.dev/celeryclusters", other},
		{"patch", "admissionregistration.k8s.io/validatingwebhookconfigurations@another-product", ""},
		{"patch", "admissionregistration.k8s.io/mutatingwebhookconfigurations@another-product", ""},
		{"create", "admissionregistration.k8s.io/validatingwebhookconfigurations", ""},
		{"delete", "admissionregistration.k8s.io/validatingwebhookconfigurations@team", ""},
		{"create", "/events", other},
		{"create", "/pods/exec", watched},
		{"create", "/pods", watched},
		{"update", "/secrets", watched},
		{"create", "rbac.authorization.k8s.io/rolebindings", watched},
		{"escalate", "rbac.authorization.k8s.io/roles", watched},
		{"delete", "/namespaces", ""},
		{"patch", "/nodes", ""},
		{"delete", "apiextensions.k8s.io/customresourcedefinitions", ""},
		{"create", "coordination.k8s.io/leases", other},
	}
}

// restrict makes ns enforce the restricted Pod Security Standard.
func restrict(t *testing.T, ns string) {
	t.Helper()
	c := testkit.Env(t).Client
	n := &corev1.Namespace{}
	if err := c.Get(t.Context(), client.ObjectKey{Name: ns}, n); err != nil {
		t.Fatal(err)
	}
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	n.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	if err := c.Update(t.Context(), n); err != nil {
		t.Fatal(err)
	}
}

// waitManagerPod waits until the manager's ReplicaSet has made its pod:
// the restricted Pod Security Standard admitted it.
func waitManagerPod(t *testing.T, ns string) {
	t.Helper()
	testkit.Eventually(t, wait, func() error {
		d := &appsv1.Deployment{}
		if err := testkit.Env(t).Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "team"}, d); err != nil {
			return err
		}
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
				return fmt.Errorf("the manager's pod was refused: %s", c.Message)
			}
		}
		if d.Status.Replicas < 1 {
			return fmt.Errorf("no manager pod yet")
		}
		return nil
	})
}

// uninstall deletes what `helm uninstall` deletes: every object but the
// CRDs kept by their resource policy.
func uninstall(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	c := testkit.Env(t).Client
	for _, u := range objs {
		if u.GetAnnotations()["helm.sh/resource-policy"] == "keep" {
			continue
		}
		if err := c.Delete(t.Context(), u.DeepCopy()); err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("delete %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
}

// TestKustomizeNamespacedInstall: config/samples/namespaced, pointed at
// the test's namespace, grants only Roles there and the cluster-scoped
// rules; the impersonation table is denied and the operators work in
// that namespace with no request refused.
func TestKustomizeNamespacedInstall(t *testing.T) {
	env := testkit.Env(t)
	watched, other := env.Namespace(t), env.Namespace(t)
	overlay := t.TempDir()
	sample, err := filepath.Abs("../../config/samples/namespaced")
	if err != nil {
		t.Fatal(err)
	}
	base, err := filepath.Rel(overlay, filepath.Join(sample, "../../default"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"kustomization.yaml", "events.yaml"} {
		b, err := os.ReadFile(filepath.Join(sample, f))
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte("team-a"), []byte(watched))
		b = bytes.ReplaceAll(b, []byte("../../default"), []byte(base))
		if err := os.WriteFile(filepath.Join(overlay, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	objs := render(t, "kubectl", "kustomize", overlay)
	// apply's dry run needs the install's namespace to exist.
	if err := env.Client.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "setpoint-system"}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, u := range objs {
		if (u.GetKind() == "ClusterRole" || u.GetKind() == "ClusterRoleBinding") && u.GetName() != "setpoint-base" {
			t.Errorf("%s %s in a namespaced install", u.GetKind(), u.GetName())
		}
	}
	apply(t, objs)
	sa := serviceAccount("setpoint-system", "setpoint")
	checkAccess(t, sa, []access{
		{"watch", "apps.setpoint.dev/apps", watched},
		{"create", "apps/deployments", watched},
		{"create", "/events", watched},
		{"patch", "admissionregistration.k8s.io/validatingwebhookconfigurations@setpoint", ""},
	}, deniedOutside(watched, other))
	refused := runAs(t, sa, "setpoint-system", "setpoint-webhook-cert", []string{watched}, "app", "celery", "reloader")
	a := &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Namespace: watched, Name: "web"},
		Spec:       appsv1alpha1.AppSpec{Image: "example/web:1", Processes: []appsv1alpha1.Process{{Name: "web"}}},
	}
	testkit.Create(t, a)
	waitAppReady(t, a)
	refused.Check(t)
}
