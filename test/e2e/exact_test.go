package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operators/app"
	"github.com/setpoint-dev/setpoint/testkit"
)

// These tests hold the declarative core to its promise (issue 14): after
// a pass the children are exactly what the App declares, and a pass with
// nothing to do writes nothing.

func webDeployment(t *testing.T, ns, name string) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	get(t, client.ObjectKey{Namespace: ns, Name: name + "-web"}, d)
	return d
}

// waitWeb waits until the web Deployment satisfies cond.
func waitWeb(t *testing.T, ns, name string, cond func(d *appsv1.Deployment, c corev1.Container) error) {
	t.Helper()
	testkit.Eventually(t, wait, func() error {
		d := &appsv1.Deployment{}
		if err := testkit.Env(t).Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name + "-web"}, d); err != nil {
			return err
		}
		return cond(d, d.Spec.Template.Spec.Containers[0])
	})
}

func envValue(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// TestRemovedFieldsAreRemoved: a field the App no longer declares goes
// from its children (probes, an env var, annotations, a port), where
// before the operator saw the live object as a superset and left them.
func TestRemovedFieldsAreRemoved(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	startApps(t, ns, nil, nil)
	a := &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Name: "lean", Namespace: ns},
		Spec: appsv1alpha1.AppSpec{
			Image: "example/lean:1", HealthCheckPath: "/healthz", Metrics: &appsv1alpha1.Metrics{Port: 9090},
			Env:       []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}},
			Processes: []appsv1alpha1.Process{{Name: "web"}},
		},
	}
	testkit.Create(t, a)
	waitWeb(t, ns, "lean", func(d *appsv1.Deployment, c corev1.Container) error {
		if c.ReadinessProbe == nil || c.LivenessProbe == nil || len(c.Ports) != 2 || d.Spec.Template.Annotations["prometheus.io/scrape"] != "true" {
			return fmt.Errorf("not built yet: %+v", c)
		}
		return nil
	})
	// The user's own command from the issue.
	patch := client.RawPatch(types.JSONPatchType, []byte(`[{"op":"remove","path":"/spec/healthCheckPath"}]`))
	if err := env.Client.Patch(t.Context(), a, patch); err != nil {
		t.Fatal(err)
	}
	waitWeb(t, ns, "lean", func(_ *appsv1.Deployment, c corev1.Container) error {
		if c.ReadinessProbe != nil || c.LivenessProbe != nil {
			return fmt.Errorf("probes still there: readiness %+v liveness %+v", c.ReadinessProbe, c.LivenessProbe)
		}
		return nil
	})
	mutateApp(t, ns, "lean", func(a *appsv1alpha1.App) {
		a.Spec.Env = a.Spec.Env[:1]
		a.Spec.Metrics = nil
	})
	waitWeb(t, ns, "lean", func(d *appsv1.Deployment, c corev1.Container) error {
		if _, ok := envValue(c, "B"); ok {
			return fmt.Errorf("env B still there: %v", c.Env)
		}
		if len(c.Ports) != 1 {
			return fmt.Errorf("ports %v, want only http", c.Ports)
		}
		if _, ok := d.Spec.Template.Annotations["prometheus.io/scrape"]; ok {
			return fmt.Errorf("annotations %v", d.Spec.Template.Annotations)
		}
		return nil
	})
	if v, _ := envValue(webDeployment(t, ns, "lean").Spec.Template.Spec.Containers[0], "A"); v != "1" {
		t.Errorf("env A = %q", v)
	}
}

// TestNumberLikeValuesAreApplied: a config value changes to another that
// parses as the same number ("1.10" to "1.1", "010" to "10") and the
// Deployment follows, exactly.
func TestNumberLikeValuesAreApplied(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	startApps(t, ns, nil, nil)
	testkit.Create(t, &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Name: "nums", Namespace: ns},
		Spec: appsv1alpha1.AppSpec{Image: "example/nums:1", Env: []corev1.EnvVar{{Name: "V", Value: "1.10"}},
			Processes: []appsv1alpha1.Process{{Name: "web"}}},
	})
	for _, v := range []string{"1.10", "1.1", "010", "10", "1e1", "0.5", "500m"} {
		mutateApp(t, ns, "nums", func(a *appsv1alpha1.App) { a.Spec.Env[0].Value = v })
		waitWeb(t, ns, "nums", func(_ *appsv1.Deployment, c corev1.Container) error {
			if got, _ := envValue(c, "V"); got != v {
				return fmt.Errorf("V = %q, want %q", got, v)
			}
			return nil
		})
	}
}

// passCounter counts the watch events of Apps the operator sees, so a
// test knows a pass was due after a change it made.
func passCounter() (*atomic.Int64, func(*operator.Operator)) {
	var n atomic.Int64
	return &n, func(op *operator.Operator) {
		operator.Watch[*appsv1alpha1.App](op).OnEvent(func(context.Context, operator.Event[*appsv1alpha1.App]) error {
			n.Add(1)
			return nil
		})
	}
}

// appPasses is how many passes the App controllers of this process have
// finished (the children's Watch and passCounter's share the name).
func appPasses(t *testing.T) float64 {
	return counter(t, "controller_runtime_reconcile_total", map[string]string{"controller": "setpoint-app.apps.setpoint.dev"})
}

// touch changes a label of the App, which brings a pass with nothing to
// do, and waits until the operator has seen it and both App controllers
// have finished a pass since, so the writes of that pass are counted.
func touch(t *testing.T, ns, name string, passes *atomic.Int64, value string) {
	t.Helper()
	done := appPasses(t)
	seen := passes.Load()
	mutateApp(t, ns, name, func(a *appsv1alpha1.App) {
		if a.Labels == nil {
			a.Labels = map[string]string{}
		}
		a.Labels["touched"] = value
	})
	testkit.Eventually(t, wait, func() error {
		if passes.Load() == seen {
			return fmt.Errorf("no pass yet")
		}
		if n := appPasses(t) - done; n < 2 {
			return fmt.Errorf("%.0f passes finished since the touch", n)
		}
		return nil
	})
}

// TestForeignListEntriesCauseNoWrites: entries other managers add to
// lists of a child (a toleration and a sidecar as a mutating webhook
// would, an env var as the reloader's env strategy does) are kept, and
// passes over the App write nothing for them.
func TestForeignListEntriesCauseNoWrites(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	var counter testkit.WriteCounter
	passes, count := passCounter()
	startApps(t, ns, &counter, count)
	testkit.Create(t, &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Name: "host", Namespace: ns},
		Spec: appsv1alpha1.AppSpec{Image: "example/host:1", Env: []corev1.EnvVar{{Name: "A", Value: "1"}},
			Processes: []appsv1alpha1.Process{{Name: "web", Replicas: new(int32(2))}}},
	})
	waitReady(t, ns, "host", "2/2")
	// A webhook's additions, by server-side apply under its own manager.
	sidecar := fmt.Sprintf(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"host-web","namespace":%q},
	  "spec":{"template":{"spec":{"tolerations":[{"key":"dedicated","operator":"Exists"}],
	  "containers":[{"name":"proxy","image":"example/proxy:1"}]}}}}`, ns)
	if err := env.Client.Patch(t.Context(), &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "host-web"}},
		client.RawPatch(types.ApplyPatchType, []byte(sidecar)), client.FieldOwner("sidecar-injector"), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
	// The reloader's env strategy: an update that adds one env var.
	testkit.Eventually(t, wait, func() error {
		d := webDeployment(t, ns, "host")
		d.Spec.Template.Spec.Containers[0].Env = append(d.Spec.Template.Spec.Containers[0].Env, corev1.EnvVar{Name: "RELOADER_CONFIGMAP_X", Value: "abc"})
		return env.Client.Update(t.Context(), d, client.FieldOwner("setpoint-reloader"))
	})
	// Both changed the pod template: let that rollout finish, and the
	// App's status follow it, before counting.
	waitWeb(t, ns, "host", func(d *appsv1.Deployment, _ corev1.Container) error {
		if s := d.Status; s.ObservedGeneration != d.Generation || s.UpdatedReplicas != 2 || s.ReadyReplicas != 2 || s.Replicas != 2 {
			return fmt.Errorf("rolling out: %+v", s)
		}
		return nil
	})
	testkit.Eventually(t, wait, func() error {
		a := &appsv1alpha1.App{}
		get(t, client.ObjectKey{Namespace: ns, Name: "host"}, a)
		for _, p := range a.Status.Processes {
			if p.UpdatedReplicas != 2 || p.ReadyReplicas != 2 {
				return fmt.Errorf("status %s", jsonOf(a.Status.Processes))
			}
		}
		return nil
	})
	waitReady(t, ns, "host", "2/2")
	before := counter.Writes()
	for i := range 5 {
		touch(t, ns, "host", passes, fmt.Sprint(i))
	}
	if extra := counter.Writes()[len(before):]; len(extra) != 0 {
		t.Errorf("passes wrote for others' list entries: %v", extra)
	}
	d := webDeployment(t, ns, "host")
	spec := d.Spec.Template.Spec
	if len(spec.Tolerations) != 1 || len(spec.Containers) != 2 {
		t.Errorf("the webhook's entries are gone: tolerations %v containers %d", spec.Tolerations, len(spec.Containers))
	}
	if v, ok := envValue(spec.Containers[0], "RELOADER_CONFIGMAP_X"); !ok || v != "abc" {
		t.Errorf("the reloader's env var is gone: %v", spec.Containers[0].Env)
	}
	// And a change of the App is still applied, around them.
	mutateApp(t, ns, "host", func(a *appsv1alpha1.App) { a.Spec.Env[0].Value = "2" })
	waitWeb(t, ns, "host", func(d *appsv1.Deployment, c corev1.Container) error {
		if v, _ := envValue(c, "A"); v != "2" {
			return fmt.Errorf("A = %q", v)
		}
		if _, ok := envValue(c, "RELOADER_CONFIGMAP_X"); !ok || len(d.Spec.Template.Spec.Containers) != 2 {
			return fmt.Errorf("foreign entries lost on apply: %+v", d.Spec.Template.Spec)
		}
		return nil
	})
}

// TestRefusedChildIsReported: a child the API server refuses shows on
// the App (Ready=False, ChildRefused, the server's message naming the
// child) and in one Warning Event, however many passes meet it; fixing
// the spec clears it.
func TestRefusedChildIsReported(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	passes, count := passCounter()
	startApps(t, ns, nil, count)
	a := &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Name: "greedy", Namespace: ns},
		Spec: appsv1alpha1.AppSpec{Image: "example/greedy:1", Processes: []appsv1alpha1.Process{{Name: "web",
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
			}}}},
	}
	testkit.Create(t, a)
	var msg string
	testkit.Eventually(t, wait, func() error {
		if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(a), a); err != nil {
			return err
		}
		c := meta.FindStatusCondition(a.Status.Conditions, app.ConditionReady)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != operator.ReasonChildRefused {
			return fmt.Errorf("Ready %+v", c)
		}
		msg = c.Message
		return nil
	})
	for _, want := range []string{"Deployment greedy-web was refused", "must be less than or equal to cpu limit"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Ready message %q does not say %q", msg, want)
		}
	}
	testkit.WaitEvent(t, a, "Warning ChildRefused: Deployment greedy-web was refused", wait)
	for i := range 3 {
		touch(t, ns, "greedy", passes, fmt.Sprint(i))
	}
	refusals := 0
	for _, e := range testkit.Events(t, a) {
		if strings.HasPrefix(e, "Warning ChildRefused") {
			refusals++
		}
	}
	if refusals != 1 {
		t.Errorf("%d ChildRefused Events, want 1: %v", refusals, testkit.Events(t, a))
	}
	mutateApp(t, ns, "greedy", func(a *appsv1alpha1.App) {
		a.Spec.Processes[0].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}
	})
	a = waitReady(t, ns, "greedy", "1/1")
	for _, c := range a.Status.Conditions {
		if c.Reason == operator.ReasonChildRefused {
			t.Errorf("condition still says the child is refused: %+v", c)
		}
	}
}

// replicaLog records every spec.replicas a Deployment had, from a watch.
type replicaLog struct {
	mu   sync.Mutex
	seen []int32
}

func watchReplicas(t *testing.T, ns, name string) *replicaLog {
	t.Helper()
	w, err := testkit.Env(t).Clientset.AppsV1().Deployments(ns).Watch(t.Context(), metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	l := &replicaLog{}
	go func() {
		for e := range w.ResultChan() {
			if d, ok := e.Object.(*appsv1.Deployment); ok && d.Spec.Replicas != nil {
				l.mu.Lock()
				l.seen = append(l.seen, *d.Spec.Replicas)
				l.mu.Unlock()
			}
		}
	}()
	return l
}

func (l *replicaLog) values() []int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seen)
}

// TestReplicasHandOffToAutoscaling: switching a process from a fixed
// count to autoscaling keeps its pods (the field is handed to the
// autoscaler with its live value, not removed and defaulted to 1), and
// switching back applies the new count with no dip on the way.
func TestReplicasHandOffToAutoscaling(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	startApps(t, ns, nil, nil)
	cpu := corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}
	testkit.Create(t, &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Name: "elastic", Namespace: ns},
		Spec: appsv1alpha1.AppSpec{Image: "example/elastic:1",
			Processes: []appsv1alpha1.Process{{Name: "web", Replicas: new(int32(3)), Resources: cpu}}},
	})
	waitReady(t, ns, "elastic", "3/3")
	log := watchReplicas(t, ns, "elastic-web")
	mutateApp(t, ns, "elastic", func(a *appsv1alpha1.App) {
		a.Spec.Processes[0].Replicas = nil
		a.Spec.Processes[0].Autoscaling = &appsv1alpha1.Autoscaling{MinReplicas: 1, MaxReplicas: 5}
	})
	testkit.Eventually(t, wait, func() error {
		if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "elastic-web"}, &autoscalingv2.HorizontalPodAutoscaler{}); err != nil {
			return err
		}
		d := webDeployment(t, ns, "elastic")
		for _, m := range d.ManagedFields {
			if m.Manager == "setpoint" && m.Operation == metav1.ManagedFieldsOperationApply && strings.Contains(string(m.FieldsV1.Raw), `"f:replicas"`) {
				return fmt.Errorf("the operator still owns spec.replicas")
			}
		}
		return nil
	})
	waitReady(t, ns, "elastic", "3/3")
	if d := webDeployment(t, ns, "elastic"); *d.Spec.Replicas != 3 {
		t.Errorf("replicas %d after the hand-off, want 3", *d.Spec.Replicas)
	}
	mutateApp(t, ns, "elastic", func(a *appsv1alpha1.App) {
		a.Spec.Processes[0].Autoscaling = nil
		a.Spec.Processes[0].Replicas = new(int32(4))
	})
	waitReady(t, ns, "elastic", "4/4")
	testkit.EventuallyGone(t, env.Client, &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "elastic-web"}}, wait)
	for _, n := range log.values() {
		if n < 3 {
			t.Fatalf("replicas went to %d on the way: %v", n, log.values())
		}
	}
}

// jsonOf is a value as its JSON, for messages.
func jsonOf(v any) string {
	data, _ := json.Marshal(v)
	return string(data)
}
