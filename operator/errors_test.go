package operator_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

var fast = operator.Backoff(operator.BackoffPolicy{Initial: 100 * time.Millisecond, Max: 400 * time.Millisecond})

// TestErrorsDecideRetries: plain errors retry with backoff until success;
// Temporary retries after its delay; Permanent and exhausted Retries stop
// with a Warning Event; a panic is an error like another; a handler past
// its Timeout fails. The flow completes in every case.
func TestErrorsDecideRetries(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	c := newCalls()
	start(t, nil, opts(ns), func(op *operator.Operator) {
		d := operator.Watch[*appsv1.Deployment](op)
		d.OnCreate(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			c.add("flaky", fmt.Sprint(cs.Retry))
			if cs.Retry < 2 {
				return errBoom
			}
			return nil
		}, operator.ID("flaky"), fast)
		d.OnCreate(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			c.add("temporary", "")
			if cs.Retry == 0 {
				return operator.Temporary(errors.New("not ready"), 100*time.Millisecond)
			}
			return nil
		}, operator.ID("temporary"))
		d.OnCreate(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			c.add("permanent", "")
			return operator.Permanent(errors.New("bad spec"))
		}, operator.ID("permanent"))
		d.OnCreate(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			c.add("limited", "")
			return errBoom
		}, operator.ID("limited"), operator.Retries(3), fast)
		d.OnCreate(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			c.add("panics", "")
			if cs.Retry == 0 {
				var m map[string]int
				m["x"] = 1 // nil map write: panics
			}
			return nil
		}, operator.ID("panics"), fast)
		d.OnCreate(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			c.add("slow", "")
			<-ctx.Done() // the handler's deadline
			return ctx.Err()
		}, operator.ID("slow"), operator.Timeout(300*time.Millisecond))
	})
	dep := deployment(ns, "errs", 1)
	create(t, dep)

	testkit.Eventually(t, wait, func() error {
		if _, ok := get(t, dep).Annotations["setpoint.dev/last-handled-configuration"]; !ok {
			return errors.New("flow not finished")
		}
		return nil
	})
	for h, want := range map[string]int{"flaky": 3, "temporary": 2, "permanent": 1, "limited": 3, "panics": 2, "slow": 1} {
		if got := c.count(h); got != want {
			t.Errorf("%s called %d times, want %d", h, got, want)
		}
	}
	if got := c.of("flaky"); strings.Join(got, ",") != "0,1,2" {
		t.Errorf("flaky saw retries %v", got)
	}
	waitEvent(t, dep, "Handler flaky failed (attempt 1), retrying")
	waitEvent(t, dep, "Handler flaky succeeded")
	waitEvent(t, dep, "Warning HandlerFailed: Handler permanent failed permanently: bad spec")
	waitEvent(t, dep, "Handler limited failed permanently: gave up after 3 attempts")
	waitEvent(t, dep, "handler panicked")
	waitEvent(t, dep, "Handler slow failed permanently: timed out after 300ms")
}

// TestAFailingObjectDoesNotDelayOthers: one object's handler fails on
// every attempt; objects created after it are handled all the same.
func TestAFailingObjectDoesNotDelayOthers(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	c := newCalls()
	var badAttempts atomic.Int64
	start(t, nil, opts(ns), func(op *operator.Operator) {
		d := operator.Watch[*appsv1.Deployment](op)
		d.OnCreate(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			if cs.Object.Name == "bad" {
				badAttempts.Add(1)
				return errBoom
			}
			c.add("good", cs.Object.Name)
			return nil
		}, fast)
	})
	create(t, deployment(ns, "bad", 1))
	testkit.Eventually(t, wait, func() error {
		if badAttempts.Load() < 3 {
			return errors.New("bad object not retried yet")
		}
		return nil
	})
	for i := range 5 {
		create(t, deployment(ns, fmt.Sprintf("good-%d", i), 1))
	}
	c.waitCount(t, "good", 5)
	if badAttempts.Load() < 3 {
		t.Error("the failing object stopped being retried")
	}
}
