package processnode_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/controlplane/processnode"
	"github.com/setpoint-dev/setpoint/testkit"
)

func TestMain(m *testing.M) {
	opts := controlplane.Full(1)
	opts.ProcessNodes = 2
	// Restarts are what some tests wait for; the kubelet's 10 s would only
	// make them slower.
	opts.RestartBackoff = time.Second
	os.Exit(testkit.Run(m, testkit.WithControlPlane(opts)))
}

// processPod is a pod on a process node running script with sh.
func processPod(ns, name, script string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr(int64(5)),
			Containers: []corev1.Container{{
				Name: "main", Image: "debian:12", Command: []string{"sh", "-c", script},
			}},
		},
	}
	processnode.PodOnProcessNode(&p.Spec)
	return p
}

func ptr[T any](v T) *T { return &v }

func createPod(t *testing.T, p *corev1.Pod) {
	t.Helper()
	env := testkit.Env(t)
	if _, err := env.Clientset.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", p.Name, err)
	}
}

func getPod(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	p, err := testkit.Env(t).Clientset.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get pod %s: %v", name, err)
	}
	return p
}

// waitPod polls until cond holds for the pod, and fails with the pod's
// status and events otherwise.
func waitPod(t *testing.T, ns, name string, timeout time.Duration, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var last *corev1.Pod
	err := testkit.Poll(context.Background(), timeout, func() error {
		p, err := testkit.Env(t).Clientset.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		last = p
		if !cond(p) {
			return fmt.Errorf("not %s yet", what)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("pod %s: %v\nstatus: %+v\nevents: %v", name, err, statusOf(last), testkit.Events(t, last))
	}
	return last
}

func statusOf(p *corev1.Pod) any {
	if p == nil {
		return nil
	}
	return p.Status
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func kubectl(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	return testkit.Kubectl(t, stdin, args...)
}

func mustKubectl(t *testing.T, args ...string) string {
	t.Helper()
	return testkit.MustKubectl(t, args...)
}

func eventuallyKubectl(t *testing.T, want string, args ...string) string {
	t.Helper()
	return testkit.EventuallyKubectl(t, 30*time.Second, want, args...)
}

func waitGone(t *testing.T, ns, name string, timeout time.Duration) {
	t.Helper()
	testkit.EventuallyGone(t, testkit.Env(t).Client, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, timeout)
}

func clientsetFor(t *testing.T, cp *controlplane.ControlPlane) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func podRunning(ctx context.Context, cs kubernetes.Interface, ns, name string) error {
	p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if p.Status.Phase != corev1.PodRunning {
		return fmt.Errorf("pod %s is %s", name, p.Status.Phase)
	}
	return nil
}
