package operator_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// configMapsOf is the index function of the test: the ConfigMaps a
// Deployment's containers take env from.
func configMapsOf(d *appsv1.Deployment) []string {
	var keys []string
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, e := range c.EnvFrom {
			if e.ConfigMapRef != nil {
				keys = append(keys, d.Namespace+"/"+e.ConfigMapRef.Name)
			}
		}
	}
	return keys
}

// TestIndexIsReadFromAnotherKindsHandler: an index over Deployments (by
// the ConfigMaps they use) answers a ConfigMap handler, and follows
// Deployments as they change.
func TestIndexIsReadFromAnotherKindsHandler(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	c := newCalls()
	start(t, nil, opts(ns), func(op *operator.Operator) {
		users := operator.NewIndex(op, "configmap-users", configMapsOf)
		operator.Watch[*corev1.ConfigMap](op).OnUpdate(func(ctx context.Context, cs *operator.Cause[*corev1.ConfigMap]) error {
			deps, err := users.Lookup(ctx, cs.Object.Namespace+"/"+cs.Object.Name)
			if err != nil {
				return err
			}
			var names []string
			for _, d := range deps {
				names = append(names, d.Name)
			}
			slices.Sort(names)
			c.add(cs.Object.Name, strings.Join(names, ","))
			return nil
		})
	})
	uses := func(name string, cms ...string) *appsv1.Deployment {
		d := deployment(ns, name, 1)
		for _, cm := range cms {
			d.Spec.Template.Spec.Containers[0].EnvFrom = append(d.Spec.Template.Spec.Containers[0].EnvFrom,
				corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm}}})
		}
		return d
	}
	web := uses("web", "shared", "web-only")
	create(t, web)
	create(t, uses("worker", "shared"))
	create(t, uses("other"))
	shared, webOnly := configMap(ns, "shared"), configMap(ns, "web-only")
	create(t, shared)
	create(t, webOnly)

	edits := 0
	touch := func(cm *corev1.ConfigMap) {
		edits++ // every touch is a real change
		mutate(t, cm, func(c *corev1.ConfigMap) { c.Data["k"] = fmt.Sprint(edits) })
	}
	// lookupReads touches cm until its handler's latest lookup reads want:
	// the index fills, and follows changes, through the informer.
	lookupReads := func(cm *corev1.ConfigMap, want string) {
		t.Helper()
		testkit.Eventually(t, wait, func() error {
			touch(cm)
			got := c.of(cm.Name)
			if len(got) == 0 || got[len(got)-1] != want {
				return fmt.Errorf("lookups so far: %q", got)
			}
			return nil
		})
	}
	lookupReads(shared, "web,worker")
	lookupReads(webOnly, "web")

	// web stops using web-only: the index follows.
	mutate(t, web, func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0].EnvFrom = d.Spec.Template.Spec.Containers[0].EnvFrom[:1]
	})
	lookupReads(webOnly, "")
}
