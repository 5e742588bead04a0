package operator_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// TestRelatedObjectsWakeTheirParents: a widget's child copies a ConfigMap
// the widget references. Editing that ConfigMap, found through an index
// over the widgets, re-renders the child.
func TestRelatedObjectsWakeTheirParents(t *testing.T) {
	installWidgetCRD(t)
	ns := testkit.Env(t).Namespace(t)
	o := opts(ns)
	o.Scheme = widgetScheme(t)
	start(t, nil, o, func(op *operator.Operator) {
		w := operator.Watch[*Widget](op)
		users := operator.NewIndex(op, "settings-users", func(w *Widget) []string {
			if w.Spec.Settings == "" {
				return nil
			}
			return []string{w.Namespace + "/" + w.Spec.Settings}
		})
		operator.WatchRelated(w, func(ctx context.Context, cm *corev1.ConfigMap) []types.NamespacedName {
			found, err := users.Lookup(ctx, cm.Namespace+"/"+cm.Name)
			if err != nil {
				return nil
			}
			return operator.Keys(found)
		})
		w.Children(func(ctx context.Context, w *Widget) ([]client.Object, error) {
			var settings corev1.ConfigMap
			err := op.Client().Get(ctx, client.ObjectKey{Namespace: w.Namespace, Name: w.Spec.Settings}, &settings)
			if err != nil && !apierrors.IsNotFound(err) {
				return nil, err
			}
			return []client.Object{&corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: w.Name + "-out"},
				Data:       map[string]string{"copied": settings.Data["k"]},
			}}, nil
		}, &corev1.ConfigMap{})
	})
	settings := configMap(ns, "settings")
	create(t, settings)
	if err := widgetClient(t).Create(t.Context(), &Widget{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: ns}, Spec: WidgetSpec{Settings: "settings"}}); err != nil {
		t.Fatal(err)
	}
	waitData(t, ns, "r-out", "copied", "v")
	mutate(t, settings, func(cm *corev1.ConfigMap) { cm.Data["k"] = "v2" })
	waitData(t, ns, "r-out", "copied", "v2")
}
