package operator_test

import (
	"context"
	"errors"
	"fmt"

	"os"
	"slices"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// The controller-manager runs so that namespaces really get deleted and
// Deployments get status updates from a real controller.
func TestMain(m *testing.M) {
	if os.Getenv(crashHelperEnv) != "" {
		// This binary started again as an operator process by a test
		// that kills it (crash_test.go): no control plane of its own.
		os.Exit(runCrashHelper())
	}
	if os.Getenv(killHelperEnv) != "" {
		os.Exit(runKillHelper()) // kill_test.go
	}
	os.Exit(testkit.Run(m, testkit.WithControlPlane(controlplane.Options{ControllerManager: true})))
}

const wait = 30 * time.Second

// calls records handler invocations for assertions.
type calls struct {
	mu  sync.Mutex
	got map[string][]string
}

func newCalls() *calls { return &calls{got: map[string][]string{}} }

func (c *calls) add(handler, detail string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got[handler] = append(c.got[handler], detail)
}

func (c *calls) of(handler string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got[handler])
}

func (c *calls) count(handler string) int { return len(c.of(handler)) }

// waitCount waits until handler has been called exactly n times.
func (c *calls) waitCount(t *testing.T, handler string, n int) {
	t.Helper()
	testkit.Eventually(t, wait, func() error {
		if got := c.count(handler); got != n {
			return fmt.Errorf("%s called %d times, want %d: %v", handler, got, n, c.of(handler))
		}
		return nil
	})
}

// running is an operator started by a test.
type running struct {
	op   *operator.Operator
	stop func() error
}

// start runs an operator watching only ns, with its handlers registered by
// register; it is stopped when the test ends, if not before.
func start(t *testing.T, cfg *rest.Config, opts operator.Options, register func(op *operator.Operator)) *running {
	t.Helper()
	if cfg == nil {
		cfg = testkit.Env(t).Config
	}
	op, err := operator.New(cfg, opts)
	if err != nil {
		t.Fatalf("new operator: %v", err)
	}
	register(op)
	return &running{op: op, stop: testkit.StartOperator(t, op)}
}

func opts(ns string) operator.Options {
	return operator.Options{Namespaces: []string{ns}, Name: "test-" + ns}
}

func deployment(ns, name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := testkit.Env(t).Client.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %s: %v", obj.GetName(), err)
	}
}

// mutate reads obj fresh, applies change and updates it, retrying on
// conflicts (the operator writes its bookkeeping concurrently).
func mutate[T client.Object](t *testing.T, obj T, change func(T)) {
	t.Helper()
	mutateWith(t, testkit.Env(t).Client, obj, change)
}

func mutateWith[T client.Object](t *testing.T, c client.Client, obj T, change func(T)) {
	t.Helper()
	testkit.Eventually(t, wait, func() error {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		change(obj)
		return c.Update(context.Background(), obj)
	})
}

func get[T client.Object](t *testing.T, obj T) T {
	t.Helper()
	if err := testkit.Env(t).Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatalf("get %s: %v", obj.GetName(), err)
	}
	return obj
}

// eventsFor lists "Type Reason: message" of the Events about an object.
func eventsFor(t *testing.T, obj client.Object) []string { return testkit.Events(t, obj) }

func waitEvent(t *testing.T, obj client.Object, substr string) {
	t.Helper()
	testkit.WaitEvent(t, obj, substr, wait)
}

var errBoom = errors.New("boom")

func clientKey(o client.Object) client.ObjectKey { return client.ObjectKeyFromObject(o) }

func clientIn(ns string) client.ListOption { return client.InNamespace(ns) }

func slicesSort(s []string) { slices.Sort(s) }

func cacheIn(ns string) cache.Options {
	return cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}}
}

// leaseHolder is the holder of Lease name in ns ("" if none or unread).
func leaseHolder(t *testing.T, ns, name string) string {
	l, err := testkit.Env(t).Clientset.CoordinationV1().Leases(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// waitData waits until the ConfigMap ns/name has want under key.
func waitData(t *testing.T, ns, name, key, want string) {
	t.Helper()
	testkit.Eventually(t, wait, func() error {
		out := &corev1.ConfigMap{}
		if err := testkit.Env(t).Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, out); err != nil {
			return err
		}
		if got := out.Data[key]; got != want {
			return fmt.Errorf("%s %q, want %q", key, got, want)
		}
		return nil
	})
}
