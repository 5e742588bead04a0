package operator_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

func configMap(ns, name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string]string{"k": "v"}}
}

// TestTimersRunPerObjectAndResumeAfterRestart: a timer ticks for each
// object, stops when the object is deleted, and ticks again under a new
// operator for objects that already existed.
func TestTimersRunPerObjectAndResumeAfterRestart(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	var ticks [2]atomic.Int64
	register := func(op *operator.Operator) {
		cm := operator.Watch[*corev1.ConfigMap](op)
		cm.Every(50*time.Millisecond, func(ctx context.Context, obj *corev1.ConfigMap, _ logr.Logger) error {
			switch obj.Name { // not kube-root-ca.crt, which every namespace has
			case "a":
				ticks[0].Add(1)
			case "b":
				ticks[1].Add(1)
			}
			return nil
		}, operator.InitialDelay(10*time.Millisecond))
	}
	first := start(t, nil, opts(ns), register)
	a, b := configMap(ns, "a"), configMap(ns, "b")
	create(t, a)
	create(t, b)
	atLeast := func(i int, n int64) {
		t.Helper()
		testkit.Eventually(t, wait, func() error {
			if got := ticks[i].Load(); got < n {
				return fmt.Errorf("timer %d ticked %d times, want %d", i, got, n)
			}
			return nil
		})
	}
	atLeast(0, 3)
	atLeast(1, 3)
	if err := env.Client.Delete(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	// Once b is gone its count stops growing while a's goes on.
	var stoppedAt int64
	testkit.Eventually(t, wait, func() error {
		before := ticks[1].Load()
		aBefore := ticks[0].Load()
		atLeast(0, aBefore+3) // a ticked three more times in the meantime
		if ticks[1].Load() != before {
			return errors.New("b's timer still ticking")
		}
		stoppedAt = before
		return nil
	})
	first.stop()
	ticks[0].Store(0)
	start(t, nil, opts(ns), register)
	atLeast(0, 3)
	if ticks[1].Load() != stoppedAt {
		t.Errorf("timer of deleted object ran under the new operator")
	}
}

// TestIdleTimerWaitsForQuiet: an idle timer does not fire while the object
// keeps changing, and fires once it has been left alone.
func TestIdleTimerWaitsForQuiet(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	var fired atomic.Int64
	start(t, nil, opts(ns), func(op *operator.Operator) {
		operator.Watch[*corev1.ConfigMap](op).Every(20*time.Millisecond, func(ctx context.Context, obj *corev1.ConfigMap, _ logr.Logger) error {
			if obj.Name == "busy" {
				fired.Add(1)
			}
			return nil
		}, operator.Idle(2*time.Second))
	})
	cm := configMap(ns, "busy")
	create(t, cm)
	// A busy user: a change every 100ms for 3s, well under the idle time
	// between changes. The ticker sets the pace of the load; nothing waits
	// on the operator here.
	pace := time.NewTicker(100 * time.Millisecond)
	defer pace.Stop()
	for i := range 30 {
		<-pace.C
		mutate(t, cm, func(c *corev1.ConfigMap) { c.Data["k"] = fmt.Sprint(i) })
		if n := fired.Load(); n != 0 {
			t.Fatalf("idle timer fired %d times while the object changed", n)
		}
	}
	testkit.Eventually(t, wait, func() error {
		if fired.Load() == 0 {
			return errors.New("idle timer never fired after the changes stopped")
		}
		return nil
	})
}

// TestDaemonsRestartOnErrorAndStopOnDelete: a daemon that fails is
// restarted with backoff; its context ends when the object is deleted.
func TestDaemonsRestartOnErrorAndStopOnDelete(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	var starts atomic.Int64
	cancelled := make(chan struct{}, 1)
	start(t, nil, opts(ns), func(op *operator.Operator) {
		operator.Watch[*corev1.ConfigMap](op).Daemon(func(ctx context.Context, obj *corev1.ConfigMap, log logr.Logger) error {
			if starts.Add(1) <= 2 {
				return errors.New("lost connection")
			}
			<-ctx.Done()
			cancelled <- struct{}{}
			return nil
		}, operator.ID("watcher"), fast)
	})
	cm := configMap(ns, "d")
	create(t, cm)
	testkit.Eventually(t, wait, func() error {
		if starts.Load() < 3 {
			return fmt.Errorf("daemon started %d times", starts.Load())
		}
		return nil
	})
	waitEvent(t, cm, "Daemon watcher failed, restarting")
	if err := env.Client.Delete(t.Context(), cm); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cancelled:
	case <-time.After(wait):
		t.Fatal("daemon context not cancelled on delete")
	}
}
