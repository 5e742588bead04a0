package operator_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// TestFinalizerIsReleasedWhenTheObjectLeavesTheFilter: an object that
// stops matching the Watch's filters (a label, a When predicate) loses
// Setpoint's finalizer, so deleting it later is not held for ever; its
// delete handler does not run (as in Kopf).
func TestFinalizerIsReleasedWhenTheObjectLeavesTheFilter(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	c := newCalls()
	start(t, nil, opts(ns), func(op *operator.Operator) {
		cms := operator.Watch[*corev1.ConfigMap](op, operator.Labels(map[string]string{"greet": "true"}),
			operator.When(func(cm *corev1.ConfigMap) bool { return cm.Data["skip"] != "yes" }))
		cms.OnDelete(func(ctx context.Context, cs *operator.Cause[*corev1.ConfigMap]) error {
			c.add("delete", cs.Object.Name)
			return nil
		})
	})
	for _, tc := range []struct {
		name  string
		leave func(cm *corev1.ConfigMap)
	}{
		{"label", func(cm *corev1.ConfigMap) { delete(cm.Labels, "greet") }},
		{"when", func(cm *corev1.ConfigMap) { cm.Data["skip"] = "yes" }},
	} {
		cm := configMap(ns, tc.name)
		cm.Labels = map[string]string{"greet": "true"}
		create(t, cm)
		waitFinalizer(t, cm, true)
		mutate(t, cm, tc.leave)
		waitFinalizer(t, cm, false)
		if err := env.Client.Delete(t.Context(), cm); err != nil {
			t.Fatal(err)
		}
		testkit.EventuallyGone(t, env.Client, cm, wait)
	}
	// Deleted in the same breath as it leaves the filter: never stuck.
	cm := configMap(ns, "quick")
	cm.Labels = map[string]string{"greet": "true"}
	create(t, cm)
	waitFinalizer(t, cm, true)
	mutate(t, cm, func(cm *corev1.ConfigMap) { delete(cm.Labels, "greet") })
	if err := env.Client.Delete(t.Context(), cm); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyGone(t, env.Client, cm, wait)
	if got := c.of("delete"); len(got) != 0 {
		t.Errorf("delete handlers ran for objects outside the filter: %v", got)
	}
}

func waitFinalizer(t *testing.T, cm *corev1.ConfigMap, want bool) {
	t.Helper()
	testkit.Eventually(t, wait, func() error {
		if has := slices.Contains(get(t, cm).Finalizers, "setpoint.dev/finalizer"); has != want {
			return fmt.Errorf("finalizer present: %v, want %v", has, want)
		}
		return nil
	})
}

// TestStatusNeedsASubresource: a Status function on a kind without a
// status subresource is an error at Run, not a status that silently
// never appears.
func TestStatusNeedsASubresource(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	op, err := operator.New(testkit.Env(t).Config, opts(ns))
	if err != nil {
		t.Fatal(err)
	}
	cms := operator.Watch[*corev1.ConfigMap](op)
	cms.Children(func(context.Context, *corev1.ConfigMap) ([]client.Object, error) { return nil, nil }, &corev1.Secret{})
	cms.Status(func(context.Context, *corev1.ConfigMap, *operator.Observed) (any, error) { return nil, nil })
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	err = op.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "ConfigMap has a Status function but its resource configmaps has no status subresource") {
		t.Fatalf("Run = %v", err)
	}
}

// TestRetryDelaysHaveAFloor: Temporary(err, 0) and a zero backoff retry
// no faster than MinRetryDelay (each retry writes the progress).
func TestRetryDelaysHaveAFloor(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	var mu sync.Mutex
	var at []time.Time
	start(t, nil, opts(ns), func(op *operator.Operator) {
		operator.Watch[*corev1.ConfigMap](op).OnCreate(func(ctx context.Context, cs *operator.Cause[*corev1.ConfigMap]) error {
			if cs.Object.Name != "eager" {
				return nil // kube-root-ca.crt
			}
			mu.Lock()
			defer mu.Unlock()
			at = append(at, time.Now())
			if len(at)%2 == 0 {
				return operator.Temporary(errors.New("not yet"), 0)
			}
			return errors.New("not yet")
		}, operator.Backoff(operator.BackoffPolicy{}))
	})
	create(t, configMap(ns, "eager"))
	testkit.Eventually(t, wait, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(at) < 6 {
			return fmt.Errorf("%d attempts so far", len(at))
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < operator.MinRetryDelay {
			t.Errorf("attempt %d came %s after the one before, under %s", i+1, gap, operator.MinRetryDelay)
		}
	}
}

// TestReconcileRetryDelaysHaveAFloor: a level-triggered handler that
// returns Temporary(err, 0) is looked at again no sooner than
// MinRetryDelay, not in a busy loop.
func TestReconcileRetryDelaysHaveAFloor(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	var mu sync.Mutex
	var at []time.Time
	start(t, nil, opts(ns), func(op *operator.Operator) {
		operator.Watch[*corev1.ConfigMap](op).Reconcile(func(ctx context.Context, p *operator.Pass[*corev1.ConfigMap]) (time.Duration, error) {
			if p.Object.Name != "eager" {
				return 0, nil // kube-root-ca.crt
			}
			mu.Lock()
			defer mu.Unlock()
			at = append(at, time.Now())
			return 0, operator.Temporary(errors.New("not yet"), 0)
		})
	})
	create(t, configMap(ns, "eager"))
	testkit.Eventually(t, wait, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(at) < 6 {
			return fmt.Errorf("%d passes so far", len(at))
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < operator.MinRetryDelay {
			t.Errorf("pass %d came %s after the one before, under %s", i+1, gap, operator.MinRetryDelay)
		}
	}
}
