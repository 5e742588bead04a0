package operator_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// TestReconcileIsLevelTriggered: a Reconcile handler sees every object,
// acts once per needed change even though passes come often (resyncs
// every second here), writes through Pass.Patch without acting twice on
// a stale cache, asks to look again, and its errors are retried or
// reported as Events.
func TestReconcileIsLevelTriggered(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	writes := &testkit.WriteCounter{}
	var stamps, lookAgain, temporary, panics atomic.Int32
	o := opts(ns)
	o.SyncPeriod = time.Second
	start(t, writes.Wrap(testkit.Env(t).Config), o, func(op *operator.Operator) {
		cms := operator.Watch[*corev1.ConfigMap](op)
		cms.Reconcile(func(ctx context.Context, p *operator.Pass[*corev1.ConfigMap]) (time.Duration, error) {
			cm := p.Object
			switch cm.Name {
			case "stamp":
				// Level: copy data.want into an annotation when they differ.
				if cm.Annotations["stamped"] == cm.Data["want"] {
					return 0, nil
				}
				stamps.Add(1)
				patch := fmt.Sprintf(`{"metadata":{"annotations":{"stamped":%q}}}`, cm.Data["want"])
				if err := p.Patch(ctx, types.MergePatchType, []byte(patch)); err != nil {
					return 0, err
				}
				p.Event(corev1.EventTypeNormal, "Stamped", "Stamped "+cm.Data["want"])
			case "again":
				if lookAgain.Add(1) < 3 {
					return 100 * time.Millisecond, nil
				}
			case "temporary":
				if temporary.Add(1) < 3 {
					return 0, operator.Temporary(errors.New("not yet"), 100*time.Millisecond)
				}
			case "permanent":
				return 0, operator.Permanent(errors.New("this cannot work"))
			case "panics":
				if panics.Add(1) < 3 {
					panic("oops")
				}
			}
			return 0, nil
		})
	})
	stamp := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "stamp"}, Data: map[string]string{"want": "1"}}
	create(t, stamp)
	for _, name := range []string{"again", "temporary", "permanent", "panics"} {
		create(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
	}
	stamped := func(want string) {
		t.Helper()
		testkit.Eventually(t, wait, func() error {
			if got := get(t, stamp).Annotations["stamped"]; got != want {
				return fmt.Errorf("stamped %q, want %q", got, want)
			}
			return nil
		})
	}
	stamped("1")
	waitEvent(t, stamp, "Normal Stamped: Stamped 1")
	mutate(t, stamp, func(cm *corev1.ConfigMap) { cm.Data["want"] = "2" })
	stamped("2")
	waitEvent(t, stamp, "Normal Stamped: Stamped 2")

	// Looking again, Temporary and a panic each bring the object back
	// without any event of its own.
	testkit.Eventually(t, wait, func() error {
		if lookAgain.Load() < 3 || temporary.Load() < 3 || panics.Load() < 3 {
			return fmt.Errorf("look-again %d, temporary %d, panics %d passes, want 3 each", lookAgain.Load(), temporary.Load(), panics.Load())
		}
		return nil
	})
	permanent := get(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "permanent"}})
	waitEvent(t, permanent, "Warning HandlerFailed: Reconcile failed, not retried until the object changes: this cannot work")

	// Two needed changes, two actions: the passes after each own write
	// (its watch event, resyncs) did nothing, and the only writes to the
	// object were those two.
	if n := stamps.Load(); n != 2 {
		t.Errorf("stamped %d times, want 2", n)
	}
	n := 0
	for _, w := range writes.Writes() {
		if w == "PATCH /api/v1/namespaces/"+ns+"/configmaps/stamp" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d patches of the object, want 2: %v", n, writes.Writes())
	}
}
