package operator_test

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// A pass's writes of bookkeeping never land on another object of the
// same name: between the read of an object and a write (a long handler,
// a slow or cut answer), the object may be deleted and one of its name
// made. Before the fix, the annotations' merge patch (addressed by name)
// put the old object's diff base or progress on the new one, whose
// create handler then never ran (or whose delete flow found its delete
// handler already done, and never ran it); and a finalizer patch that
// failed re-read the object by name and took the finalizer off the new
// one. The finalizer patch also reports the object gone, so a create
// pass stops there rather than run the create handler of an object
// deleted before it had the finalizer, whose delete handler can never
// run (TestOperatorSIGKILLs met that under load).
func TestBookkeepingNeverLandsOnANewObjectOfTheName(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	ctx := t.Context()
	op, err := operator.New(env.Config, operator.Options{Name: "stale-" + ns, Namespaces: []string{ns}})
	if err != nil {
		t.Fatal(err)
	}
	k := operator.Watch[*corev1.ConfigMap](op)
	baseKey, fin := operator.BookKeys(op)
	key := types.NamespacedName{Namespace: ns, Name: "c"}
	// The old object, as a pass read it: with the finalizer.
	old := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c", Finalizers: []string{fin}}}
	testkit.Create(t, old)
	read := &unstructured.Unstructured{}
	read.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	if err := op.APIReader().Get(ctx, key, read); err != nil {
		t.Fatal(err)
	}
	// It goes, and another of its name comes, with the finalizer too.
	old.Finalizers = nil
	if err := env.Client.Update(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, old); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	testkit.Create(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c", Finalizers: []string{fin}}})
	t.Cleanup(func() {
		now := &corev1.ConfigMap{}
		if env.Client.Get(ctx, key, now) == nil {
			now.Finalizers = nil
			_ = env.Client.Update(ctx, now)
		}
	})

	// An error or nothing: either way, not written.
	if err := operator.WriteBase(ctx, k, read.DeepCopy(), `{"spec":"of the old object"}`); err != nil {
		t.Logf("diff base: %v", err)
	}
	// Removing the finalizer, and adding it (a create pass that read the
	// old object), find the old object gone and leave the new one alone.
	for _, add := range []bool{false, true} {
		u := read.DeepCopy()
		if add {
			u.SetFinalizers(nil) // as read before the finalizer was added
		}
		gone, err := operator.SetFinalizer(ctx, k, u, add)
		if err != nil || !gone {
			t.Errorf("finalizer (add %v) on the old object: gone %v, error %v; want gone", add, gone, err)
		}
	}

	now := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, key, now); err != nil {
		t.Fatal(err)
	}
	if v, ok := now.Annotations[baseKey]; ok {
		t.Errorf("the new ConfigMap got the old one's diff base %q", v)
	}
	if !slices.Contains(now.Finalizers, fin) {
		t.Errorf("the new ConfigMap lost its finalizer: %v", now.Finalizers)
	}
}
