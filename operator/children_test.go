package operator_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// widgetChildren is the pure function of the tests: one ConfigMap per
// unit of spec.size.
func widgetChildren(ctx context.Context, w *Widget) ([]client.Object, error) {
	var out []client.Object
	for i := range w.Spec.Size {
		out = append(out, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", w.Name, i), Labels: map[string]string{"widget": w.Name}},
			Data:       map[string]string{"index": fmt.Sprint(i), "of": fmt.Sprint(w.Spec.Size)},
		})
	}
	return out, nil
}

func widgetStatus(ctx context.Context, w *Widget, children *operator.Observed) (any, error) {
	return WidgetStatus{Children: children.Len(), ObservedGeneration: w.Generation}, nil
}

func startWidgets(t *testing.T, ns string, counter *testkit.WriteCounter, events *atomic.Int64, tune ...func(*operator.Options)) {
	t.Helper()
	installWidgetCRD(t)
	o := opts(ns)
	o.Scheme = widgetScheme(t)
	o.SyncPeriod = time.Second // resyncs must not write either
	for _, f := range tune {
		f(&o)
	}
	cfg := testkit.Env(t).Config
	if counter != nil {
		cfg = counter.Wrap(cfg)
	}
	start(t, cfg, o, func(op *operator.Operator) {
		w := operator.Watch[*Widget](op)
		w.Children(widgetChildren, &corev1.ConfigMap{})
		w.Status(widgetStatus)
		w.OnEvent(func(ctx context.Context, e operator.Event[*Widget]) error {
			if events != nil {
				events.Add(1)
			}
			return nil
		})
	})
}

func childNames(t *testing.T, ns, widget string) []string {
	t.Helper()
	var list corev1.ConfigMapList
	if err := testkit.Env(t).Client.List(t.Context(), &list, client.InNamespace(ns), client.MatchingLabels{"widget": widget}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range list.Items {
		if c.DeletionTimestamp == nil {
			names = append(names, c.Name)
		}
	}
	slices.Sort(names)
	return names
}

func waitChildren(t *testing.T, ns, widget string, want ...string) {
	t.Helper()
	testkit.Eventually(t, wait, func() error {
		if got := childNames(t, ns, widget); !slices.Equal(got, want) {
			return fmt.Errorf("children %v, want %v", got, want)
		}
		return nil
	})
}

// TestChildrenAreAppliedOwnedAndPruned: the desired children appear with
// an owner reference and Setpoint's labels; shrinking prunes the extra
// ones; a same-named object that someone else owns, and an unowned object
// with the same labels, are never touched.
func TestChildrenAreAppliedOwnedAndPruned(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	// Someone else's ConfigMap where child 2 would go, and an unowned one
	// that carries the children's label.
	squatter := configMap(ns, "w-2")
	squatter.Data = map[string]string{"mine": "yes"}
	create(t, squatter)
	lookalike := configMap(ns, "w-extra")
	lookalike.Labels = map[string]string{"widget": "w"}
	create(t, lookalike)

	startWidgets(t, ns, nil, nil)
	wc := widgetClient(t)
	w := &Widget{ObjectMeta: metav1.ObjectMeta{Name: "w", Namespace: ns}, Spec: WidgetSpec{Size: 3}}
	if err := wc.Create(t.Context(), w); err != nil {
		t.Fatal(err)
	}
	waitChildren(t, ns, "w", "w-0", "w-1", "w-extra")
	c0 := get(t, configMap(ns, "w-0"))
	if ref := metav1.GetControllerOf(c0); ref == nil || ref.UID != w.UID || ref.Kind != "Widget" {
		t.Errorf("owner reference %+v", c0.OwnerReferences)
	}
	if c0.Labels["setpoint.dev/owner-uid"] != string(w.UID) || c0.Data["of"] != "3" {
		t.Errorf("child labels %v data %v", c0.Labels, c0.Data)
	}
	waitEvent(t, w, "ConfigMap w-2 exists and is not controlled by this object")
	if got := get(t, configMap(ns, "w-2")).Data; got["mine"] != "yes" || len(got) != 1 {
		t.Errorf("someone else's object was changed: %v", got)
	}

	mutateWith(t, wc, w, func(w *Widget) { w.Spec.Size = 1 })
	waitChildren(t, ns, "w", "w-0", "w-extra")
	testkit.Eventually(t, wait, func() error {
		if d := get(t, configMap(ns, "w-0")).Data["of"]; d != "1" {
			return fmt.Errorf("w-0 not updated: of=%s", d)
		}
		return nil
	})
	if _, err := env.Clientset.CoreV1().ConfigMaps(ns).Get(t.Context(), "w-2", metav1.GetOptions{}); err != nil {
		t.Errorf("someone else's object was pruned: %v", err)
	}
}

// TestChildrenLeftByAnEarlierParentAreReplaced: a parent deleted and made
// again under its name finds children of the deleted one, where its own
// go and elsewhere. Kubernetes' garbage collector removes those, but can
// miss them (see leftover.go), and till then the new parent would have no
// children. Setpoint removes them when nothing else owns them. The test
// freezes kube-controller-manager (SIGSTOP), so the garbage collector
// cannot do it instead. A child that has another owner too is left alone.
func TestChildrenLeftByAnEarlierParentAreReplaced(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	startWidgets(t, ns, nil, nil) // the default LeftoverGrace, 30 s: longer than the test
	wc := widgetClient(t)
	first := &Widget{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: ns}, Spec: WidgetSpec{Size: 3}}
	if err := wc.Create(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	waitChildren(t, ns, "r", "r-0", "r-1", "r-2")
	other := configMap(ns, "r-other-owner")
	create(t, other)
	mutate(t, configMap(ns, "r-1"), func(c *corev1.ConfigMap) {
		c.OwnerReferences = append(c.OwnerReferences, metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: other.Name, UID: other.UID})
	})
	freezeGarbageCollector(t)
	deleteWidget(t, first)
	second := &Widget{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: ns}, Spec: WidgetSpec{Size: 2}}
	if err := wc.Create(t.Context(), second); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, wait, func() error {
		c := configMap(ns, "r-0")
		if err := env.Client.Get(t.Context(), clientKey(c), c); err != nil {
			return err
		}
		if ref := metav1.GetControllerOf(c); ref == nil || ref.UID != second.UID {
			return fmt.Errorf("r-0 controlled by %+v, want the new widget %s", ref, second.UID)
		}
		return nil
	})
	// r-2, which the new one does not want, goes too.
	waitChildren(t, ns, "r", "r-0", "r-1")
	waitEvent(t, second, "ConfigMap r-0 was left by an earlier Widget r")
	waitEvent(t, second, "ConfigMap r-2 was left by an earlier Widget r")
	waitEvent(t, second, "ConfigMap r-1 exists and is not controlled by this object")
	if ref := metav1.GetControllerOf(get(t, configMap(ns, "r-1"))); ref == nil || ref.UID != first.UID {
		t.Errorf("r-1, which has another owner too, was taken: controller %+v", ref)
	}
}

// TestChildrenOfAGoneParentAreDeletedAfterTheGrace: with the garbage
// collector frozen, the children of a deleted parent are deleted by
// Setpoint once Options.LeftoverGrace has passed.
func TestChildrenOfAGoneParentAreDeletedAfterTheGrace(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	startWidgets(t, ns, nil, nil, func(o *operator.Options) { o.LeftoverGrace = time.Second })
	w := &Widget{ObjectMeta: metav1.ObjectMeta{Name: "g", Namespace: ns}, Spec: WidgetSpec{Size: 2}}
	if err := widgetClient(t).Create(t.Context(), w); err != nil {
		t.Fatal(err)
	}
	waitChildren(t, ns, "g", "g-0", "g-1")
	freezeGarbageCollector(t)
	deleteWidget(t, w)
	waitChildren(t, ns, "g")
}

// deleteWidget deletes w and waits until it is gone.
func deleteWidget(t *testing.T, w *Widget) {
	t.Helper()
	wc := widgetClient(t)
	if err := wc.Delete(t.Context(), w); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, wait, func() error {
		if err := wc.Get(t.Context(), clientKey(w), &Widget{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("widget still there: %v", err)
		}
		return nil
	})
}

// freezeGarbageCollector stops kube-controller-manager until the test
// ends (no test of this package runs in parallel).
func freezeGarbageCollector(t *testing.T) {
	t.Helper()
	pid, ok := testkit.Env(t).ControlPlane.Pid(controlplane.ControllerManager)
	if !ok {
		t.Fatal("no kube-controller-manager")
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
}

// TestDriftIsReverted: a child edited or deleted by hand is put back.
func TestDriftIsReverted(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	startWidgets(t, ns, nil, nil)
	w := &Widget{ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: ns}, Spec: WidgetSpec{Size: 2}}
	if err := widgetClient(t).Create(t.Context(), w); err != nil {
		t.Fatal(err)
	}
	waitChildren(t, ns, "d", "d-0", "d-1")
	mutate(t, configMap(ns, "d-0"), func(c *corev1.ConfigMap) { c.Data["index"] = "tampered" })
	testkit.Eventually(t, wait, func() error {
		if v := get(t, configMap(ns, "d-0")).Data["index"]; v != "0" {
			return fmt.Errorf("index is %q", v)
		}
		return nil
	})
	if err := env.Client.Delete(t.Context(), configMap(ns, "d-1")); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, wait, func() error {
		c := &corev1.ConfigMap{}
		err := env.Client.Get(t.Context(), clientKey(configMap(ns, "d-1")), c)
		if err != nil {
			return err
		}
		if c.DeletionTimestamp != nil {
			return errors.New("still the deleted one")
		}
		return nil
	})
}

// TestConvergedPassesMakeNoWrites counts every request the operator's
// client makes that could write: once the children exist and the status
// says so, resyncs (every second) and status-only updates make none.
func TestConvergedPassesMakeNoWrites(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	var counter testkit.WriteCounter
	var events atomic.Int64
	startWidgets(t, ns, &counter, &events)
	wc := widgetClient(t)
	w := &Widget{ObjectMeta: metav1.ObjectMeta{Name: "q", Namespace: ns}, Spec: WidgetSpec{Size: 3}}
	if err := wc.Create(t.Context(), w); err != nil {
		t.Fatal(err)
	}
	waitChildren(t, ns, "q", "q-0", "q-1", "q-2")
	testkit.Eventually(t, wait, func() error {
		if err := wc.Get(t.Context(), clientKey(w), w); err != nil {
			return err
		}
		if w.Status.Children != 3 || w.Status.ObservedGeneration != w.Generation {
			return fmt.Errorf("status %+v", w.Status)
		}
		return nil
	})
	// From here on every pass is a converged one: the pass that wrote the
	// status had applied the children before, and our own writes' events
	// find nothing to do.
	before := counter.Writes()
	// Changes that concern neither the children nor the status: a label
	// on the parent, and labels on a child that the desired child does not
	// set. Then several resyncs (one a second) go by.
	mutateWith(t, wc, w, func(w *Widget) { w.Labels = map[string]string{"touched": "yes"} })
	mutate(t, configMap(ns, "q-0"), func(c *corev1.ConfigMap) { c.Labels["extra"] = "yes" })
	seen := events.Load()
	testkit.Eventually(t, wait, func() error {
		if n := events.Load() - seen; n < 3 {
			return fmt.Errorf("%d resyncs of the parent so far", n)
		}
		return nil
	})
	if extra := counter.Writes()[len(before):]; len(extra) != 0 {
		t.Errorf("converged passes wrote: %v", extra)
	}
	for _, name := range []string{"q-0", "q-1", "q-2"} {
		if _, err := testkit.Env(t).Clientset.CoreV1().ConfigMaps(ns).Get(t.Context(), name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			t.Errorf("%s gone", name)
		}
	}
}
