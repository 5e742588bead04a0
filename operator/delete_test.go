package operator_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// TestFailingDeleteHandlerHoldsTheObjectAndSaysWhy: the finalizer keeps
// the object while the delete handler fails; each failure is an Event;
// once it succeeds the finalizer goes and so does the object.
func TestFailingDeleteHandlerHoldsTheObjectAndSaysWhy(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	c := newCalls()
	start(t, nil, opts(ns), func(op *operator.Operator) {
		d := operator.Watch[*appsv1.Deployment](op)
		d.OnDelete(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			c.add("delete", "")
			if cs.Retry < 2 {
				return errors.New("backend still has data")
			}
			return nil
		}, operator.ID("release"), fast)
	})
	dep := deployment(ns, "held", 1)
	create(t, dep)
	testkit.Eventually(t, wait, func() error {
		if !slices.Contains(get(t, dep).Finalizers, "setpoint.dev/finalizer") {
			return errors.New("no finalizer")
		}
		return nil
	})
	if err := env.Client.Delete(t.Context(), dep); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, dep, "Handler release failed (attempt 1), retrying in 100ms: backend still has data")
	c.waitCount(t, "delete", 3)
	testkit.EventuallyGone(t, env.Client, dep, wait)
}

// TestOptionalDeleteHandlerAddsNoFinalizer: the object is never held, and
// the handler still runs when the deletion is seen.
func TestOptionalDeleteHandlerAddsNoFinalizer(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	c := newCalls()
	start(t, nil, opts(ns), func(op *operator.Operator) {
		d := operator.Watch[*appsv1.Deployment](op)
		d.OnCreate(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			c.add("create", "")
			return nil
		})
		d.OnDelete(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			c.add("delete", cs.Object.Name)
			return nil
		}, operator.Optional())
	})
	dep := deployment(ns, "free", 1)
	create(t, dep)
	c.waitCount(t, "create", 1)
	if f := get(t, dep).Finalizers; len(f) != 0 {
		t.Fatalf("finalizers %v on an object with only an optional delete handler", f)
	}
	if err := env.Client.Delete(t.Context(), dep); err != nil {
		t.Fatal(err)
	}
	c.waitCount(t, "delete", 1)
}

// TestNamespaceWithHandledObjectsIsDeleted: finalizers of delete handlers
// are released and timers and daemons hold none, so deleting a namespace
// full of handled objects completes (Kopf #1088, #1104, #1305).
func TestNamespaceWithHandledObjectsIsDeleted(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	stopped := make(chan string, 10)
	start(t, nil, opts(ns), func(op *operator.Operator) {
		d := operator.Watch[*appsv1.Deployment](op)
		d.OnDelete(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error { return nil })
		d.Every(50*time.Millisecond, func(ctx context.Context, obj *appsv1.Deployment, _ logr.Logger) error { return nil })
		d.Daemon(func(ctx context.Context, obj *appsv1.Deployment, _ logr.Logger) error {
			<-ctx.Done()
			stopped <- obj.Name
			return nil
		})
	})
	for i := range 5 {
		create(t, deployment(ns, fmt.Sprintf("d%d", i), 1))
	}
	testkit.Eventually(t, wait, func() error {
		var list appsv1.DeploymentList
		if err := env.Client.List(t.Context(), &list, clientIn(ns)); err != nil {
			return err
		}
		for _, d := range list.Items {
			if !slices.Contains(d.Finalizers, "setpoint.dev/finalizer") {
				return fmt.Errorf("%s has no finalizer yet", d.Name)
			}
		}
		return nil
	})
	if err := env.Clientset.CoreV1().Namespaces().Delete(t.Context(), ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyGone(t, env.Client, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, wait)
	for range 5 {
		select {
		case <-stopped:
		case <-time.After(wait):
			t.Fatal("a daemon's context was not cancelled when its object went away")
		}
	}
}

// TestNamespaceDeletionWithManyHandledObjects (#17 item 7): a namespace
// of handled objects with delete handlers is deleted promptly, and with
// the operator down it waits, then finishes once the operator is back.
// make chaos runs it with 1,000 objects (SETPOINT_NS_OBJECTS); make test
// with 200.
func TestNamespaceDeletionWithManyHandledObjects(t *testing.T) {
	n := testkit.EnvCount(t, "SETPOINT_NS_OBJECTS", 200)
	installWidgetCRD(t)
	env := testkit.Env(t)
	c := newCalls()
	register := func(op *operator.Operator) {
		operator.Watch[*Widget](op).OnDelete(func(ctx context.Context, cs *operator.Cause[*Widget]) error {
			c.add("delete", cs.Object.Namespace+"/"+cs.Object.Name)
			return nil
		})
	}
	for _, down := range []bool{false, true} {
		ns := env.Namespace(t)
		o := opts(ns)
		o.Scheme = widgetScheme(t)
		r := start(t, nil, o, register)
		createWidgets(t, ns, n)
		waitFinalizers(t, ns, n)
		before := c.count("delete")
		began := time.Now()
		if down {
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
		}
		if err := env.Clientset.CoreV1().Namespaces().Delete(t.Context(), ns, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if down {
			// The namespace controller has seen the finalizers and waits.
			waitNamespaceCondition(t, ns, corev1.NamespaceFinalizersRemaining)
			began = time.Now()
			start(t, nil, o, register)
		}
		testkit.EventuallyGone(t, env.Client, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, time.Minute)
		took := time.Since(began)
		calls := c.count("delete") - before
		fault := "namespace deleted"
		if down {
			fault += ", the operator down until it waits"
		}
		testkit.ReportChaos(t, testkit.ChaosRow{Fault: fmt.Sprintf("%s (%d objects with delete handlers)", fault, n), Injected: 1, Survived: 1,
			Lost: max(0, n-calls), Reconverge: []time.Duration{took}})
		if calls < n {
			t.Errorf("%d delete handler calls for %d objects", calls, n)
		}
	}
}

func createWidgets(t *testing.T, ns string, n int) {
	t.Helper()
	wc := widgetClient(t)
	var g errgroup.Group
	g.SetLimit(16)
	for i := range n {
		g.Go(func() error {
			return wc.Create(t.Context(), &Widget{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("w%04d", i), Namespace: ns}, Spec: WidgetSpec{Size: i}})
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

func waitFinalizers(t *testing.T, ns string, n int) {
	t.Helper()
	wc := widgetClient(t)
	testkit.Eventually(t, time.Minute, func() error {
		var list WidgetList
		if err := wc.List(t.Context(), &list, clientIn(ns)); err != nil {
			return err
		}
		with := 0
		for _, w := range list.Items {
			if slices.Contains(w.Finalizers, "setpoint.dev/finalizer") {
				with++
			}
		}
		if with != n {
			return fmt.Errorf("%d of %d widgets have the finalizer", with, n)
		}
		return nil
	})
}

func waitNamespaceCondition(t *testing.T, ns string, cond corev1.NamespaceConditionType) {
	t.Helper()
	testkit.Eventually(t, time.Minute, func() error {
		got, err := testkit.Env(t).Clientset.CoreV1().Namespaces().Get(t.Context(), ns, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == cond && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("namespace %s: no %s condition yet: %+v", ns, cond, got.Status.Conditions)
	})
}
