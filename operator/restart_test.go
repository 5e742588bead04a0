package operator_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// TestChangeWhileDownIsAnUpdateAfterRestart: the diff base on the object,
// not memory, decides the cause. A change made while no operator ran is
// an update (with its diff) for the next one, existing objects get their
// resume handlers once, and nothing is created twice.
func TestChangeWhileDownIsAnUpdateAfterRestart(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	c := newCalls()
	register := func(op *operator.Operator) {
		d := operator.Watch[*appsv1.Deployment](op)
		d.OnCreate(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			c.add("create", cs.Object.Name)
			return nil
		})
		d.OnUpdate(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			c.add("update", fmt.Sprint(cs.Diff))
			return nil
		})
		d.OnResume(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			c.add("resume", cs.Object.Name)
			return nil
		})
	}
	first := start(t, nil, opts(ns), register)
	dep := deployment(ns, "api", 1)
	create(t, dep)
	c.waitCount(t, "create", 1)
	testkit.Eventually(t, wait, func() error {
		if _, ok := get(t, dep).Annotations["setpoint.dev/last-handled-configuration"]; !ok {
			return errors.New("no diff base yet")
		}
		return nil
	})
	first.stop()
	if n := c.count("resume"); n != 0 {
		t.Errorf("resume ran %d times for an object created in the same process", n)
	}

	mutate(t, dep, func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](4) })
	start(t, nil, opts(ns), register)
	c.waitCount(t, "update", 1)
	c.waitCount(t, "resume", 1)
	if got := c.of("update")[0]; got != "[change spec.replicas: 1 -> 4]" {
		t.Errorf("update diff %s", got)
	}
	if n := c.count("create"); n != 1 {
		t.Errorf("create ran %d times, want 1", n)
	}
}

// TestFlowResumesWhereItStopped: three create handlers; the operator
// stops while the second one runs. The next operator runs the second and
// third only: the first, which succeeded, never runs again. The progress
// annotation is gone once the flow is done.
func TestFlowResumesWhereItStopped(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	c := newCalls()
	inSecond := make(chan struct{}, 1)
	block := true
	register := func(op *operator.Operator) {
		d := operator.Watch[*appsv1.Deployment](op)
		d.OnCreate(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			c.add("first", "")
			return nil
		}, operator.ID("first"))
		blocking := block
		d.OnCreate(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			c.add("second", fmt.Sprintf("blocking=%v", blocking))
			if blocking {
				inSecond <- struct{}{}
				<-ctx.Done() // the operator is stopped ("crashes") here
				return ctx.Err()
			}
			return nil
		}, operator.ID("second"))
		d.OnCreate(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			c.add("third", "")
			return nil
		}, operator.ID("third"))
	}
	first := start(t, nil, opts(ns), register)
	dep := deployment(ns, "flow", 1)
	create(t, dep)
	<-inSecond
	first.stop()
	if n := c.count("third"); n != 0 {
		t.Fatalf("third ran before second finished")
	}
	if _, ok := get(t, dep).Annotations["setpoint.dev/handler-progress"]; !ok {
		t.Fatal("no progress recorded on the object after the first handler succeeded")
	}

	block = false
	start(t, nil, opts(ns), register)
	c.waitCount(t, "third", 1)
	c.waitCount(t, "second", 2)
	if n := c.count("first"); n != 1 {
		t.Errorf("first ran %d times, want 1", n)
	}
	testkit.Eventually(t, wait, func() error {
		a := get(t, dep).Annotations
		if _, ok := a["setpoint.dev/handler-progress"]; ok {
			return errors.New("progress still on the object")
		}
		if _, ok := a["setpoint.dev/last-handled-configuration"]; !ok {
			return errors.New("no diff base")
		}
		return nil
	})
}

// TestACleanStopIsNotACrash: the operator stops while the flow's last
// handler runs (it returns when its context ends). That attempt was
// recorded as running before the call; the stop must clear it, or the
// next operator would count a crash, and with Retries(1) mark the
// handler failed without ever running it again.
func TestACleanStopIsNotACrash(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	c := newCalls()
	started := make(chan struct{}, 1)
	block := true
	register := func(op *operator.Operator) {
		blocking := block
		operator.Watch[*appsv1.Deployment](op).OnCreate(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			c.add("create", "")
			if blocking {
				started <- struct{}{}
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		}, operator.Retries(1))
	}
	first := start(t, nil, opts(ns), register)
	dep := deployment(ns, "stopped", 1)
	create(t, dep)
	<-started
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	block = false
	start(t, nil, opts(ns), register)
	c.waitCount(t, "create", 2)
	testkit.Eventually(t, wait, func() error {
		if _, ok := get(t, dep).Annotations["setpoint.dev/last-handled-configuration"]; !ok {
			return errors.New("flow not finished")
		}
		return nil
	})
	for _, e := range eventsFor(t, dep) {
		if strings.Contains(e, "did not return") || strings.Contains(e, "failed permanently") {
			t.Errorf("the clean stop was counted as a crash: %s", e)
		}
	}
}
