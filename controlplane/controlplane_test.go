package controlplane_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/testkit"
)

func start(t *testing.T, opts controlplane.Options) *controlplane.ControlPlane {
	t.Helper()
	opts.UnsafeNoFsync = true
	cp, err := controlplane.Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	return cp
}

// alive reports whether a process with this pid still exists. Stop waits
// for its children, so a stopped component is not even a zombie.
func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

func assertStopped(t *testing.T, cp *controlplane.ControlPlane, pids []int) {
	t.Helper()
	if err := cp.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d still running after Stop", pid)
		}
	}
}

func TestStartStopLeavesNothingBehind(t *testing.T) {
	cp := start(t, controlplane.Options{})
	pids := cp.Pids()
	if len(pids) != 2 {
		t.Fatalf("want etcd and kube-apiserver, got %d processes", len(pids))
	}
	cs := kubernetes.NewForConfigOrDie(cp.Config)
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	// Built without the version ldflags the server says v0.0.0-master,
	// which version-gated clients misread.
	if v.Major != "1" || !strings.HasPrefix(v.GitVersion, "v1.") {
		t.Errorf("server version %+v, want a real v1.x release", v)
	}
	// RBAC is on: an identity outside system:masters is refused.
	anon := *cp.Config
	anon.TLSClientConfig.CertData, anon.TLSClientConfig.KeyData = nil, nil
	if _, err := kubernetes.NewForConfigOrDie(&anon).CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{}); err == nil {
		t.Error("anonymous list of namespaces was allowed")
	}
	dir := cp.Dir()
	assertStopped(t, cp, pids)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir %s left behind (stat: %v)", dir, err)
	}
}

func TestDirKeepsClusterState(t *testing.T) {
	dir := t.TempDir()
	cp := start(t, controlplane.Options{Dir: dir})
	cs := kubernetes.NewForConfigOrDie(cp.Config)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kept", Namespace: "default"}, Data: map[string]string{"k": "v"}}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(t.Context(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create: %v", err)
	}
	assertStopped(t, cp, cp.Pids())
	if _, err := os.Stat(filepath.Join(dir, "kubeconfig")); err != nil {
		t.Fatalf("kubeconfig not kept in Dir: %v", err)
	}

	cp2 := start(t, controlplane.Options{Dir: dir})
	got, err := kubernetes.NewForConfigOrDie(cp2.Config).CoreV1().ConfigMaps("default").Get(t.Context(), "kept", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if got.Data["k"] != "v" {
		t.Errorf("data after restart = %v", got.Data)
	}
}

func TestDeadComponentIsReportedWithItsLog(t *testing.T) {
	cp := start(t, controlplane.Options{})
	etcdPid := cp.Pids()[0]
	if err := syscall.Kill(etcdPid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill etcd: %v", err)
	}
	select {
	case err := <-cp.Err():
		if !strings.Contains(err.Error(), "etcd exited unexpectedly") || !strings.Contains(err.Error(), "etcd.log") {
			t.Errorf("error does not name etcd and its log: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no error reported within 30s of etcd's death")
	}
}

func TestMissingBinaryIsAClearError(t *testing.T) {
	// bin/ is full in a checkout that ran make tools, so ask for a name
	// that exists nowhere and look at what the caller is told.
	_, err := controlplane.FindBinary("no-such-binary")
	if !errors.Is(err, controlplane.ErrMissingBinary) || !strings.Contains(err.Error(), "make tools") {
		t.Errorf("err = %v, want ErrMissingBinary mentioning make tools", err)
	}
}

func TestFullControlPlaneRunsADeploymentOnKwokNodes(t *testing.T) {
	cp := start(t, controlplane.Full(2))
	if n := len(cp.Pids()); n != 5 {
		t.Fatalf("want 5 processes (etcd, apiserver, kcm, scheduler, kwok), got %d", n)
	}
	cs := kubernetes.NewForConfigOrDie(cp.Config)
	nodes, err := cs.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 2 {
		t.Fatalf("nodes: %v, %d", err, len(nodes.Items))
	}

	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](20),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
			},
		},
	}
	// The controller-manager creates the "default" ServiceAccount shortly
	// after start; until then pod admission refuses the ReplicaSet's pods,
	// and it retries by itself.
	if _, err := cs.AppsV1().Deployments("default").Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	testkit.Eventually(t, 90*time.Second, func() error {
		got, err := cs.AppsV1().Deployments("default").Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got.Status.ReadyReplicas != 20 {
			return fmt.Errorf("ready replicas %d/20", got.Status.ReadyReplicas)
		}
		return nil
	})
	pods, err := cs.CoreV1().Pods("default").List(t.Context(), metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning || !strings.HasPrefix(p.Spec.NodeName, "kwok-node-") {
			t.Errorf("pod %s: phase %s on node %q", p.Name, p.Status.Phase, p.Spec.NodeName)
		}
	}
	assertStopped(t, cp, cp.Pids())
}

// BenchmarkStart measures a warm start of etcd and kube-apiserver to
// /readyz, and the stop that follows (target: start under 10 s).
func BenchmarkStart(b *testing.B) {
	benchmarkStart(b, controlplane.Options{UnsafeNoFsync: true})
}

// BenchmarkStartFull adds controller-manager, scheduler and one kwok node
// that must be Ready.
func BenchmarkStartFull(b *testing.B) {
	o := controlplane.Full(1)
	o.UnsafeNoFsync = true
	benchmarkStart(b, o)
}

func benchmarkStart(b *testing.B, o controlplane.Options) {
	var ready time.Duration
	for b.Loop() {
		t0 := time.Now()
		cp, err := controlplane.Start(context.Background(), o)
		if err != nil {
			b.Fatal(err)
		}
		ready += time.Since(t0)
		if err := cp.Stop(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(ready.Seconds()/float64(b.N), "s-to-ready/op")
}
