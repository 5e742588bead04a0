package install

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operators/reloader"
	"github.com/setpoint-dev/setpoint/testkit"
)

// `kubectl apply -k config/default`, into the test's namespace as a
// user's overlay would put it, applies cleanly; run as its ServiceAccount
// the three operators do their work (an App becomes Ready, a CeleryCluster
// reads its broker, the reloader rolls a Deployment, the webhooks refuse
// a bad App) with no request refused, and the account cannot do what the
// operators never need.
func TestKustomizeInstall(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	overlay := t.TempDir()
	base, err := filepath.Abs("../../config/default")
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(overlay, base)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), fmt.Appendf(nil, "namespace: %s\nresources:\n- %s\n", ns, rel), 0o644); err != nil {
		t.Fatal(err)
	}
	objs := render(t, "kubectl", "kustomize", overlay)
	checkManager(t, find(t, objs, "Deployment", "setpoint"), "app", "celery", "reloader")
	apply(t, objs)

	sa := serviceAccount(ns, "setpoint")
	checkAccess(t, sa, []access{
		{"watch", "apps.setpoint.dev/apps", ""},
		{"patch", "apps.setpoint.dev/apps/status", ""},
		{"patch", "celery.setpoint.dev/celeryclusters/status", ""},
		{"create", "apps/deployments", "default"},
		{"delete", "networking.k8s.io/ingresses", "default"},
		{"patch", "apps/statefulsets", "default"},
		{"list", "/secrets", ""},
		{"create", "/events", "default"},
		{"update", "coordination.k8s.io/leases", ns},
		{"create", "/secrets", ns},
		{"patch", "admissionregistration.k8s.io/validatingwebhookconfigurations@setpoint", ""},
	}, []access{
		{"patch", "admissionregistration.k8s.io/validatingwebhookconfigurations@another-product", ""},
		{"create", "admissionregistration.k8s.io/validatingwebhookconfigurations", ""},
		{"delete", "/namespaces", ""},
		{"create", "rbac.authorization.k8s.io/clusterrolebindings", ""},
		{"create", "rbac.authorization.k8s.io/roles", "default"},
		{"escalate", "rbac.authorization.k8s.io/clusterroles", ""},
		{"create", "/pods", "default"},
		{"create", "/pods/exec", "default"},
		{"delete", "apiextensions.k8s.io/customresourcedefinitions", ""},
		{"create", "/secrets", "default"},
		{"update", "/secrets", "default"},
		{"update", "/configmaps", "default"},
		{"delete", "apps.setpoint.dev/apps", "default"},
		{"patch", "/nodes", ""},
		{"create", "coordination.k8s.io/leases", "default"},
	})

	refused := runAs(t, sa, ns, "setpoint-webhook-cert", nil, "app", "celery", "reloader")
	work := testkit.Env(t).Namespace(t)
	redis := startRedis(t)
	testkit.Create(t,
		secret(work, "db", map[string]string{"password": "s3cret"}),
		secret(work, "broker", map[string]string{"url": redis.URL}),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: work, Name: "web-config"}, Data: map[string]string{"GREETING": "hello"}},
	)
	a := &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Namespace: work, Name: "web"},
		Spec: appsv1alpha1.AppSpec{
			Image: "example/web:1", Processes: []appsv1alpha1.Process{{Name: "web"}},
			Env: []corev1.EnvVar{{Name: "DB_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}}},
			EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}},
			Routes:  []appsv1alpha1.Route{{Host: "web.example.com"}},
		},
	}
	c := testkit.Env(t).Client
	// The webhooks answer once the operator has registered them (its
	// certificate Secret written as the ServiceAccount).
	bad := a.DeepCopy()
	bad.Name = "typo"
	bad.Spec.Env[0].ValueFrom.SecretKeyRef.Key = "pasword"
	testkit.Eventually(t, wait, func() error {
		err := c.Create(t.Context(), bad.DeepCopy(), client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), `Secret db has no key "pasword"`) {
			return fmt.Errorf("App with a missing key: %v, want refused by the webhook", err)
		}
		return nil
	})
	testkit.Create(t, a, brokerCluster(work, "tasks", "broker"))

	waitAppReady(t, a)
	waitBrokerReachable(t, brokerCluster(work, "tasks", "broker"))

	// The reloader rolls an opted-in Deployment when its ConfigMap changes.
	labels := map[string]string{"app": "plain"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: work, Name: "plain", Annotations: map[string]string{reloader.AnnotationAuto: "true"}},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox",
					EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}}}}},
			},
		},
	}
	testkit.Create(t, d)
	testkit.Eventually(t, wait, func() error {
		got := &appsv1.Deployment{}
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(d), got); err != nil {
			return err
		}
		if got.Annotations[reloader.AnnotationHashes] == "" {
			return fmt.Errorf("reloader has not recorded what %s uses", d.Name)
		}
		return nil
	})
	cm := &corev1.ConfigMap{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: work, Name: "web-config"}, cm); err != nil {
		t.Fatal(err)
	}
	cm.Data["GREETING"] = "hi"
	if err := c.Update(t.Context(), cm); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, wait, func() error {
		got := &appsv1.Deployment{}
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(d), got); err != nil {
			return err
		}
		if got.Spec.Template.Annotations[reloader.AnnotationConfigHash] == "" {
			return fmt.Errorf("%s not rolled", d.Name)
		}
		return nil
	})
	testkit.WaitEvent(t, d, "web-config", wait)

	// Leader election took its Lease in the install namespace.
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "setpoint"}, &coordinationv1.Lease{}); err != nil {
		t.Errorf("leader-election Lease: %v", err)
	}
	refused.Check(t)
}
