package e2e

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operators/app"
	"github.com/setpoint-dev/setpoint/testkit"
)

// TestConfigHashOfValuesKeptAcrossUpgrade: pods made by an operator that
// hashed configuration values themselves (one run without
// ConcealConfigValues, as every operator did before the caches held
// digests) do not roll when
// an operator hashing digests takes over; they roll when the
// configuration changes.
func TestConfigHashOfValuesKeptAcrossUpgrade(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	c := env.Client
	testkit.Create(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cfg"}, Data: map[string]string{"A": "1"}})
	testkit.Create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sec"}, Data: map[string][]byte{"B": []byte("2")}})

	installCRDs(t)
	earlier := newOperatorWith(t, ns, nil, func(o *operator.Options) { o.ConcealConfigValues = false })
	if err := app.Setup(earlier); err != nil {
		t.Fatal(err)
	}
	stop := testkit.StartOperator(t, earlier)
	a := &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Name: "up", Namespace: ns},
		Spec: appsv1alpha1.AppSpec{
			Image: "example/up:1",
			Env: []corev1.EnvVar{
				{Name: "A", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "A"}}},
				{Name: "B", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Key: "B"}}},
			},
			Processes: []appsv1alpha1.Process{{Name: "web", Replicas: new(int32(1))}},
		},
	}
	testkit.Create(t, a)
	waitReady(t, ns, "up", "1/1")
	before := &appsv1.Deployment{}
	get(t, client.ObjectKey{Namespace: ns, Name: "up-web"}, before)
	if before.Spec.Template.Annotations[app.AnnotationConfigHash] == "" {
		t.Fatal("the earlier operator put no config hash on the pods")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	var passes atomic.Int64
	startApps(t, ns, nil, func(op *operator.Operator) {
		operator.Watch[*appsv1alpha1.App](op).OnEvent(func(context.Context, operator.Event[*appsv1alpha1.App]) error {
			passes.Add(1)
			return nil
		})
	})
	// A few resyncs (one a second) of the App by the new operator.
	testkit.Eventually(t, wait, func() error {
		if n := passes.Load(); n < 3 {
			return fmt.Errorf("%d passes so far", n)
		}
		return nil
	})
	after := &appsv1.Deployment{}
	get(t, client.ObjectKeyFromObject(before), after)
	if after.Generation != before.Generation || after.Spec.Template.Annotations[app.AnnotationConfigHash] != before.Spec.Template.Annotations[app.AnnotationConfigHash] {
		t.Fatalf("the new operator rolled the pods: generation %d -> %d, config hash %q -> %q", before.Generation, after.Generation,
			before.Spec.Template.Annotations[app.AnnotationConfigHash], after.Spec.Template.Annotations[app.AnnotationConfigHash])
	}

	// A change of a value the pods read rolls them.
	s := &corev1.Secret{}
	get(t, client.ObjectKey{Namespace: ns, Name: "sec"}, s)
	s.Data["B"] = []byte("3")
	if err := c.Update(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, wait, func() error {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(before), after); err != nil {
			return err
		}
		if after.Spec.Template.Annotations[app.AnnotationConfigHash] == before.Spec.Template.Annotations[app.AnnotationConfigHash] {
			return fmt.Errorf("config hash unchanged after the Secret's change")
		}
		return nil
	})
}
