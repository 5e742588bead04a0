package main

import (
	"context"

	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/setpoint-dev/setpoint/controlplane/processnode"
)

// TestDevEndToEnd runs `setpoint dev` as a user would: it waits for the
// kubeconfig line, uses the cluster with client-go, stops it with Ctrl-C
// (SIGINT), checks nothing is left running, then starts it again on the
// same --data-dir and finds the cluster as it was, at the same address.
func TestDevEndToEnd(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "dev-state")

	dev := startSetpoint(t, "dev", "--nodes", "2", "--process-nodes", "1", "--data-dir", dataDir)
	kubeconfig := exportedKubeconfig(t, dev)
	if kubeconfig != filepath.Join(dataDir, "kubeconfig") {
		t.Errorf("kubeconfig %s is not in --data-dir %s", kubeconfig, dataDir)
	}
	cs := clientFor(t, kubeconfig)
	eventually(t, func() error { return readyNodes(cs, 3) })
	// A process pod writes to its claim; the data outlives the plane.
	createClaimPod(t, cs)
	eventually(t, func() error { return podLogs(cs, "writer", "wrote") })
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "survives", Namespace: "default"}, Data: map[string]string{"k": "v"}}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(t.Context(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create configmap: %v", err)
	}
	server := serverOf(t, kubeconfig)

	if procs := processesMentioning(dataDir); len(procs) != 5 {
		t.Fatalf("want 5 control plane processes, found %d:\n%s", len(procs), strings.Join(procs, "\n"))
	}
	// The operators hold the install's Lease (a second instance would be
	// refused); a Ctrl-C releases it without an error line.
	eventually(t, func() error {
		lease, err := cs.CoordinationV1().Leases("setpoint-system").Get(t.Context(), "setpoint", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
			return fmt.Errorf("the Lease has no holder yet")
		}
		return nil
	})
	dev.stop(t, syscall.SIGINT, 90*time.Second)
	if out := dev.output(); strings.Contains(out, "leader election lost") {
		t.Errorf("Ctrl-C logged a lost leader election:\n%s", out)
	}
	if procs := processesMentioning(dataDir); len(procs) != 0 {
		t.Fatalf("processes left after setpoint dev exited:\n%s", strings.Join(procs, "\n"))
	}

	again := startSetpoint(t, "dev", "--nodes", "2", "--process-nodes", "1", "--data-dir", dataDir)
	if got := exportedKubeconfig(t, again); got != kubeconfig {
		t.Errorf("kubeconfig moved: %s, then %s", kubeconfig, got)
	}
	if got := serverOf(t, kubeconfig); got != server {
		t.Errorf("API server address changed across restart: %s, then %s", server, got)
	}
	cs = clientFor(t, kubeconfig)
	eventually(t, func() error { return readyNodes(cs, 3) })
	// The process pod runs again after the restart, and finds its data.
	eventually(t, func() error { return podLogs(cs, "writer", "found") })
	got, err := cs.CoreV1().ConfigMaps("default").Get(t.Context(), "survives", metav1.GetOptions{})
	if err != nil || got.Data["k"] != "v" {
		t.Fatalf("configmap after restart: %v %v", got, err)
	}
	again.stop(t, syscall.SIGTERM, 90*time.Second)
	if procs := processesMentioning(dataDir); len(procs) != 0 {
		t.Fatalf("processes left after SIGTERM:\n%s", strings.Join(procs, "\n"))
	}
}

func exportedKubeconfig(t *testing.T, c *command) string {
	t.Helper()
	line := c.waitLine(t, "export KUBECONFIG=", 3*time.Minute)
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "export KUBECONFIG="))
}

func clientFor(t *testing.T, kubeconfig string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

func serverOf(t *testing.T, kubeconfig string) string {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	return cfg.Host
}

func readyNodes(cs kubernetes.Interface, want int) error {
	nodes, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err
	}
	ready := 0
	for _, n := range nodes.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	if ready != want {
		return fmt.Errorf("%d of %d nodes Ready", ready, len(nodes.Items))
	}
	return nil
}

// createClaimPod makes a claim and a process pod that says "found" when
// the claim already holds its file and "wrote" when it wrote it.
func createClaimPod(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "default"}, Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
	}}
	if _, err := cs.CoreV1().PersistentVolumeClaims("default").Create(t.Context(), claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "writer", Namespace: "default"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "main", Image: "debian:12", Command: []string{"sh", "-c",
			`if [ -e /data/f ]; then echo found; else echo x > /data/f && echo wrote; fi; exec sleep 3600`},
			VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
		Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}},
	}}
	processnode.PodOnProcessNode(&pod.Spec)
	if _, err := cs.CoreV1().Pods("default").Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func podLogs(cs kubernetes.Interface, name, want string) error {
	b, err := cs.CoreV1().Pods("default").GetLogs(name, &corev1.PodLogOptions{}).DoRaw(context.Background())
	if err != nil {
		return err
	}
	if !strings.Contains(string(b), want) {
		return fmt.Errorf("logs of %s: %q, want %q", name, b, want)
	}
	return nil
}

// TestDevWithoutOperators: --operators ” is a plane with no operator.
func TestDevWithoutOperators(t *testing.T) {
	dev := startSetpoint(t, "dev", "--operators", "", "--nodes", "0", "--process-nodes", "0")
	line := dev.waitLine(t, "operators:", 3*time.Minute)
	if strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "operators:")) != "none" {
		t.Errorf("banner: %q", line)
	}
	exportedKubeconfig(t, dev)
	dev.stop(t, syscall.SIGINT, 90*time.Second)
}

// TestDevAsAnOrdinaryUser: without root, process nodes run in a user
// namespace of their own. Run as nobody (CI is root), a process pod runs
// and prints, and Ctrl-C leaves nothing behind.
func TestDevAsAnOrdinaryUser(t *testing.T) {
	dev := startCommand(t, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
		"env", "HOME=/tmp", setpointBin, "dev", "--nodes", "0", "--process-nodes", "1", "--operators", "")
	kubeconfig := exportedKubeconfig(t, dev)
	dir := filepath.Dir(kubeconfig)
	cs := clientFor(t, kubeconfig)
	eventually(t, func() error { return readyNodes(cs, 1) })
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "rootless", Namespace: "default"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "main", Image: "debian:12",
			Command: []string{"sh", "-c", `echo "hello from $(hostname) as $(id -u)"; exec sleep 3600`}}},
	}}
	processnode.PodOnProcessNode(&pod.Spec)
	if _, err := cs.CoreV1().Pods("default").Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Root in the pod is root of the user namespace: nobody outside.
	eventually(t, func() error { return podLogs(cs, "rootless", "hello from rootless as 0") })
	dev.stop(t, syscall.SIGINT, 90*time.Second)
	if procs := processesMentioning(dir); len(procs) != 0 {
		t.Fatalf("processes left after setpoint dev exited:\n%s", strings.Join(procs, "\n"))
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s left after setpoint dev exited (%v)", dir, err)
	}
}
