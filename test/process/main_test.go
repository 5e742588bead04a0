package process

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	celeryv1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	crdmanifests "github.com/setpoint-dev/setpoint/config/crd"
	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/operator/crd"
	"github.com/setpoint-dev/setpoint/testkit"
)

func TestMain(m *testing.M) {
	opts := controlplane.Full(1)
	opts.ProcessNodes = 1
	os.Exit(testkit.Run(m, testkit.WithControlPlane(opts),
		testkit.WithScheme(testkit.NewScheme(celeryv1alpha1.AddToScheme))))
}

// processNamespace is a fresh namespace whose every pod runs on the
// process nodes, with the CRDs installed.
func processNamespace(t *testing.T) string {
	t.Helper()
	env := testkit.Env(t)
	if err := crd.Install(t.Context(), env.Config, time.Minute,
		crdmanifests.MustGet(celeryv1alpha1.GroupVersion.Group, "celeryclusters")); err != nil {
		t.Fatalf("install CRDs: %v", err)
	}
	name := env.ProcessNamespace(t)
	t.Cleanup(func() {
		if t.Failed() {
			dump(t, name)
		}
	})
	return name
}

// runOperatorPod runs `setpoint run` with args as a pod of Setpoint's own
// image in ns, as an account bound to cluster-admin (the install's own
// least-privilege roles are tested in test/install).
func runOperatorPod(t *testing.T, ns string, args ...string) {
	t.Helper()
	env := testkit.Env(t)
	ctx := t.Context()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "setpoint", Namespace: ns}}
	if _, err := env.Clientset.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "setpoint-" + ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "setpoint", Namespace: ns}}}
	if _, err := env.Clientset.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Clientset.RbacV1().ClusterRoleBindings().Delete(context.Background(), crb.Name, metav1.DeleteOptions{})
	})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "setpoint", Namespace: ns}, Spec: corev1.PodSpec{
		ServiceAccountName: "setpoint",
		Containers: []corev1.Container{{Name: "setpoint", Image: "ghcr.io/setpoint-dev/setpoint:dev",
			Args: append([]string{"run"}, args...)}},
	}}
	if _, err := env.Clientset.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRunning(t, ns, "setpoint")
}

func waitRunning(t *testing.T, ns, name string) {
	t.Helper()
	testkit.Eventually(t, 2*time.Minute, func() error {
		p, err := testkit.Env(t).Clientset.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Spec.NodeName == "" || p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("pod %s on %q is %s", name, p.Spec.NodeName, p.Status.Phase)
		}
		return nil
	})
}

// dump logs what a person would look at when a scenario fails.
func dump(t *testing.T, ns string) {
	for _, args := range [][]string{
		{"get", "pods,deployments,services,celeryclusters", "-o", "wide"},
		{"get", "events", "--sort-by=.lastTimestamp"},
		{"logs", "setpoint", "--tail=40"},
		{"logs", "-l", "celery.setpoint.dev/component", "--tail=30", "--prefix"},
		{"get", "celeryclusters", "-o", "yaml"},
	} {
		out, _ := testkit.Kubectl(t, "", append([]string{"-n", ns}, args...)...)
		t.Logf("kubectl %v:\n%s", args, out)
	}
}
