package operator_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// TestHandlersFollowTheObjectsLife covers create, update, field and delete
// handlers on one Deployment, and that status-only changes (the real
// controller-manager writes Deployment status) trigger nothing.
func TestHandlersFollowTheObjectsLife(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	c := newCalls()
	var fieldDiffs []string
	r := start(t, nil, opts(ns), func(op *operator.Operator) {
		d := operator.Watch[*appsv1.Deployment](op)
		d.OnCreate(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			c.add("create", fmt.Sprint(*cs.Object.Spec.Replicas))
			return nil
		})
		d.OnUpdate(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			var paths []string
			for _, it := range cs.Diff {
				paths = append(paths, strings.Join(it.Path, "."))
			}
			c.add("update", strings.Join(paths, ","))
			return nil
		})
		d.OnField("spec.replicas", func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			c.add("replicas", fmt.Sprintf("%v->%v", cs.Old, cs.New))
			fieldDiffs = append(fieldDiffs, fmt.Sprint(cs.Diff))
			return nil
		}, operator.ID("replicas"))
		d.OnDelete(func(ctx context.Context, cs *operator.Cause[*appsv1.Deployment]) error {
			c.add("delete", cs.Object.Name)
			return nil
		})
	})
	_ = r

	dep := deployment(ns, "web", 1)
	create(t, dep)
	c.waitCount(t, "create", 1)
	c.waitCount(t, "replicas", 1)
	if got := c.of("replicas")[0]; got != "<nil>->1" {
		t.Errorf("field handler on create got %s, want <nil>->1", got)
	}
	// The finalizer is there because a delete handler exists.
	testkit.Eventually(t, wait, func() error {
		if !slices.Contains(get(t, dep).Finalizers, "setpoint.dev/finalizer") {
			return errors.New("no finalizer")
		}
		return nil
	})

	mutate(t, dep, func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](3) })
	c.waitCount(t, "update", 1)
	c.waitCount(t, "replicas", 2)
	if got := c.of("replicas")[1]; got != "1->3" {
		t.Errorf("field handler got %s, want 1->3", got)
	}
	if got := c.of("update")[0]; got != "spec.replicas" {
		t.Errorf("update diff paths %q, want spec.replicas", got)
	}

	mutate(t, dep, func(d *appsv1.Deployment) { d.Labels = map[string]string{"tier": "front"} })
	c.waitCount(t, "update", 2)
	if got := c.of("update")[1]; got != "metadata.labels" {
		t.Errorf("update diff paths %q, want metadata.labels", got)
	}
	// The label change did not touch spec.replicas.
	if n := c.count("replicas"); n != 2 {
		t.Errorf("field handler ran %d times, want 2", n)
	}
	if n := c.count("create"); n != 1 {
		t.Errorf("create ran %d times", n)
	}

	if err := env.Client.Delete(t.Context(), dep); err != nil {
		t.Fatal(err)
	}
	c.waitCount(t, "delete", 1)
	testkit.EventuallyGone(t, env.Client, dep, wait)
	// Every handler's success was an Event.
	waitEvent(t, dep, "Handler replicas succeeded")
}
