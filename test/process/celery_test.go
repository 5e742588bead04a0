package process

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	celeryv1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	"github.com/setpoint-dev/setpoint/testkit"
	"github.com/setpoint-dev/setpoint/testkit/brokers"
)

// The Celery app of the test: one task that sleeps, with its start
// recorded in the result backend.
const tasksPy = `import os, time
from celery import Celery
app = Celery("tasks", broker=os.environ["CELERY_BROKER_URL"], backend=os.environ["CELERY_BROKER_URL"])
app.conf.task_track_started = True

@app.task
def slow(seconds):
    time.sleep(seconds)
    return "slept %d" % seconds
`

// TestCeleryScaleDownLetsTheRunningTaskFinish: a CeleryCluster whose
// operator, broker and workers all run for real. A 20 s task is running
// when the pool scales to zero (its queue is empty), and the worker's warm
// shutdown finishes it inside the grace period: the result is stored.
func TestCeleryScaleDownLetsTheRunningTaskFinish(t *testing.T) {
	env := testkit.Env(t)
	ns := processNamespace(t)
	ctx := t.Context()
	app := t.TempDir()
	if err := os.WriteFile(filepath.Join(app, "tasks.py"), []byte(tasksPy), 0o644); err != nil {
		t.Fatal(err)
	}
	startRedis(t, ns)
	broker := "redis://redis:6379/0"
	testkit.Create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "broker"}, StringData: map[string]string{"url": broker}})
	runOperatorPod(t, ns, "--operators", "celery", "--namespace", ns)

	grace := int64(60)
	cc := &celeryv1alpha1.CeleryCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tasks"}, Spec: celeryv1alpha1.CeleryClusterSpec{
		Image: "example/tasks:1", App: "tasks",
		Broker: celeryv1alpha1.Broker{URLSecretRef: corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "broker"}, Key: "url"}},
		// The image is not pulled: the app is the host's file.
		Env:          []corev1.EnvVar{{Name: "PYTHONPATH", Value: app}},
		PollInterval: &metav1.Duration{Duration: 200 * time.Millisecond},
		Pools: []celeryv1alpha1.Pool{{Name: "default", Queues: []string{"work"}, MinReplicas: ptr(int32(0)), ScaleToZero: true,
			MaxReplicas: 1, TargetBacklog: 1, ScaleDownWindow: &metav1.Duration{Duration: 2 * time.Second},
			TerminationGracePeriodSeconds: &grace}},
	}}
	testkit.Create(t, cc)

	client := processPodSpec(ns, "client", "exec sleep 3600")
	client.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "PYTHONPATH", Value: app}, {Name: "CELERY_BROKER_URL", Value: broker}}
	testkit.Create(t, client)
	waitRunning(t, ns, "client")
	testkit.MustKubectl(t, "-n", ns, "exec", "client", "--", brokers.Python, "-c",
		`from tasks import slow; slow.apply_async(args=[20], task_id="long-1", queue="work")`)

	// The backlog brings a worker, which takes the task and empties the
	// queue: the pool scales back to zero while the task runs.
	result := func() string {
		out, _ := testkit.Kubectl(t, "", "-n", ns, "exec", "redis", "--", "redis-cli", "GET", "celery-task-meta-long-1")
		return out
	}
	testkit.Eventually(t, 2*time.Minute, func() error {
		if r := result(); !strings.Contains(r, `"STARTED"`) {
			return fmt.Errorf("task not started yet: %q", r)
		}
		return nil
	})
	testkit.Eventually(t, time.Minute, func() error {
		d, err := env.Clientset.AppsV1().Deployments(ns).Get(ctx, "tasks-default", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 0 {
			return fmt.Errorf("pool at %v replicas, waiting for the scale-down", d.Spec.Replicas)
		}
		return nil
	})
	if r := result(); !strings.Contains(r, `"STARTED"`) {
		t.Fatalf("the task was no longer running when the pool scaled down (%q): the test proves nothing", r)
	}
	// The worker's pod is deleted, and its warm shutdown lets the task end.
	testkit.Eventually(t, time.Minute, func() error {
		if r := result(); !strings.Contains(r, `"SUCCESS"`) || !strings.Contains(r, "slept 20") {
			return fmt.Errorf("result %q", r)
		}
		return nil
	})
	testkit.Eventually(t, time.Minute, func() error {
		pods, err := env.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=default"})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d worker pod(s) left", len(pods.Items))
		}
		return nil
	})
}

// startRedis runs redis-server as a pod behind the Service redis.
func startRedis(t *testing.T, ns string) {
	t.Helper()
	p := processPodSpec(ns, "redis", "exec redis-server --port 6379 --save '' --appendonly no --protected-mode no")
	p.Labels = map[string]string{"app": "redis"}
	p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{PeriodSeconds: 1,
		ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"redis-cli", "ping"}}}}
	testkit.Create(t, p, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "redis"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "redis"}, Ports: []corev1.ServicePort{{Port: 6379, TargetPort: intstr.FromInt32(6379)}},
	}})
	waitRunning(t, ns, "redis")
}

// processPodSpec is a pod that runs script with sh; the namespace sends it
// to a process node.
func processPodSpec(ns, name, script string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{
		TerminationGracePeriodSeconds: ptr(int64(5)),
		Containers:                    []corev1.Container{{Name: "main", Image: "debian:12", Command: []string{"sh", "-c", script}}},
	}}
}

func ptr[T any](v T) *T { return &v }

var _ = appsv1.SchemeGroupVersion
var _ = context.Background
