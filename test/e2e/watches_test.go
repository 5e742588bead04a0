package e2e

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operators/app"
	"github.com/setpoint-dev/setpoint/testkit"
)

// TestAppWatchesDeploymentsOnce: the App operator holds one watch of
// Deployments, the one its children are read from, also for an App with
// configuration (whose pods' config hash it reads back): a second,
// typed cache would hold every Deployment of the cluster a second time.
func TestAppWatchesDeploymentsOnce(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	testkit.Create(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cfg"}, Data: map[string]string{"A": "1"}})
	installCRDs(t)
	var watches testkit.WatchCounter
	op := newOperatorWith(t, ns, watches.Wrap(env.Config), nil)
	if err := app.Setup(op); err != nil {
		t.Fatal(err)
	}
	testkit.StartOperator(t, op)
	testkit.Create(t, &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Name: "once", Namespace: ns},
		Spec: appsv1alpha1.AppSpec{
			Image: "example/once:1",
			Env: []corev1.EnvVar{{Name: "A", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "A"}}}},
			Processes: []appsv1alpha1.Process{{Name: "web", Replicas: new(int32(1))}},
		},
	})
	waitReady(t, ns, "once", "1/1")
	path := "/apis/apps/v1/namespaces/" + ns + "/deployments"
	// Polled: a watch the server ends is reopened, and is not counted
	// for that moment.
	testkit.Eventually(t, wait, func() error {
		if n := watches.Open(path); n != 1 {
			return fmt.Errorf("%d watches of Deployments open, want 1", n)
		}
		return nil
	})
}
