package processnode_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/controlplane/processnode"
	"github.com/setpoint-dev/setpoint/testkit"
)

// fetch is a pod command that prints an HTTP GET of url with Debian's
// python3, which every plane with process nodes has (make deps).
func fetch(url string) string {
	return fmt.Sprintf(`/usr/bin/python3 -c 'import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' %s`, url)
}

func webServer(ns, name, body string) *corev1.Pod {
	p := processPod(ns, name, fmt.Sprintf(`mkdir -p /srv && echo %s > /srv/index.html && cd /srv && exec /usr/bin/python3 -m http.server 8080`, body))
	p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{PeriodSeconds: 1,
		ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}}
	return p
}

// Pods reach each other by address, a Service by its ClusterIP and by
// every DNS name a cluster gives it, and the proxy follows the Service's
// endpoints as they change.
func TestPodsReachServicesByName(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	ctx := context.Background()
	createPod(t, webServer(ns, "web-a", "from-a"))
	a := waitPod(t, ns, "web-a", time.Minute, "Ready", ready)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web-a"},
		Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromString("http")}},
	}}
	svc, err := env.Clientset.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	createPod(t, processPod(ns, "client", "exec sleep 3600"))
	waitPod(t, ns, "client", time.Minute, "Ready", ready)
	for _, url := range []string{
		"http://" + a.Status.PodIP + ":8080/",
		"http://" + svc.Spec.ClusterIP + "/",
		"http://web/",
		"http://web." + ns + "/",
		"http://web." + ns + ".svc.cluster.local/",
	} {
		out := eventuallyKubectl(t, "from-a", "-n", ns, "exec", "client", "--", "sh", "-c", fetch(url))
		if strings.TrimSpace(out) != "from-a" {
			t.Errorf("GET %s: %q", url, out)
		}
	}
	// Point the Service at another pod: the proxy follows within moments.
	createPod(t, webServer(ns, "web-b", "from-b"))
	waitPod(t, ns, "web-b", time.Minute, "Ready", ready)
	svc.Spec.Selector = map[string]string{"app": "web-b"}
	if _, err := env.Clientset.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventuallyKubectl(t, "from-b", "-n", ns, "exec", "client", "--", "sh", "-c", fetch("http://web/"))
}

// A pod reaches the API server at kubernetes.default.svc as its
// ServiceAccount, with that account's RBAC: kubectl inside the pod uses
// in-cluster config like any client.
func TestPodsReachTheAPIServerAsTheirServiceAccount(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	ctx := context.Background()
	kubectlBin, err := controlplane.FindBinary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	p := processPod(ns, "incluster", "exec sleep 3600")
	createPod(t, p)
	waitPod(t, ns, "incluster", time.Minute, "Ready", ready)
	get := []string{"-n", ns, "exec", "incluster", "--", kubectlBin, "get", "configmaps", "-o", "name"}
	out, err := kubectl(t, "", get...)
	if err == nil || !strings.Contains(out, `"system:serviceaccount:`+ns+`:default" cannot list resource "configmaps"`) {
		t.Fatalf("without a Role: %v: %s", err, out)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "read"}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list"},
	}}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "read"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "read"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: ns}}}
	if _, err := env.Clientset.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Clientset.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventuallyKubectl(t, "configmap/kube-root-ca.crt", get...)
}

// kubectl port-forward reaches a pod's and a Service's port from the host.
func TestPortForward(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	createPod(t, webServer(ns, "pf", "forwarded"))
	waitPod(t, ns, "pf", time.Minute, "Ready", ready)
	_, err := testkit.Env(t).Clientset.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "pf", Namespace: ns}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "pf"}, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"pod/pf", "svc/pf"} {
		port := portForward(t, ns, target, map[string]string{"pod/pf": "8080", "svc/pf": "80"}[target])
		body, err := testkit.HTTPGet("http://127.0.0.1:" + port + "/")
		if err != nil || strings.TrimSpace(body) != "forwarded" {
			t.Errorf("port-forward %s: %q, %v", target, body, err)
		}
	}
}

// portForward runs kubectl port-forward to a free local port and returns
// it once kubectl says it is forwarding.
func portForward(t *testing.T, ns, target, remote string) string {
	t.Helper()
	bin, _ := controlplane.FindBinary("kubectl")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--kubeconfig", testkit.Env(t).ControlPlane.KubeconfigPath,
		"-n", ns, "port-forward", target, ":"+remote)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	// "Forwarding from 127.0.0.1:PORT -> REMOTE"
	var port string
	if _, scanErr := fmt.Sscanf(strings.TrimSpace(line), "Forwarding from 127.0.0.1:%s", &port); err != nil || scanErr != nil {
		t.Fatalf("port-forward %s: %q %v", target, line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return port
}

// A StatefulSet with a headless Service and claims: its pods find each
// other at <pod>.<svc>, and a deleted pod comes back to its data.
func TestStatefulSetWithClaims(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	ctx := context.Background()
	_, err := env.Clientset.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns}, Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "db"},
			Ports: []corev1.ServicePort{{Port: 8080}},
		}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := webServer(ns, "x", "$(hostname)-$(cat /data/id)")
	tmpl.Spec.Containers[0].Command = []string{"sh", "-c",
		`[ -e /data/id ] || date +%s%N > /data/id; mkdir -p /srv && echo "$(hostname)-$(cat /data/id)" > /srv/index.html && cd /srv && exec /usr/bin/python3 -m http.server 8080`}
	tmpl.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns}, Spec: appsv1.StatefulSetSpec{
		Replicas: ptr(int32(3)), ServiceName: "db",
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "db"}}, Spec: tmpl.Spec},
		VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}, Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		}}},
	}}
	if _, err := env.Clientset.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		waitPod(t, ns, fmt.Sprintf("db-%d", i), 2*time.Minute, "Ready", ready)
	}
	before := eventuallyKubectl(t, "db-2-", "-n", ns, "exec", "db-0", "--", "sh", "-c", fetch("http://db-2.db:8080/"))
	pvc, err := env.Clientset.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data-db-2", metav1.GetOptions{})
	if err != nil || pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != processnode.StorageClass {
		t.Fatalf("claim data-db-2: %v (class %v): the default StorageClass should be %s", err, pvc.Spec.StorageClassName, processnode.StorageClass)
	}

	old := getPod(t, ns, "db-2")
	if err := env.Clientset.CoreV1().Pods(ns).Delete(ctx, "db-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPod(t, ns, "db-2", 2*time.Minute, "back and Ready", func(p *corev1.Pod) bool { return p.UID != old.UID && ready(p) })
	after := eventuallyKubectl(t, "db-2-", "-n", ns, "exec", "db-1", "--", "sh", "-c", fetch("http://db-2.db."+ns+".svc.cluster.local:8080/"))
	if strings.TrimSpace(after) != strings.TrimSpace(before) {
		t.Errorf("db-2 after its deletion says %q, before %q: its data did not survive", after, before)
	}

	// Deleting the claim (after its pod) removes the volume and its directory.
	pv := pvc.Spec.VolumeName
	pvObj, err := env.Clientset.CoreV1().PersistentVolumes().Get(ctx, pv, metav1.GetOptions{})
	if err != nil || pvObj.Spec.HostPath == nil {
		t.Fatalf("volume %s: %v", pv, err)
	}
	dir := pvObj.Spec.HostPath.Path
	if err := env.Clientset.AppsV1().StatefulSets(ns).Delete(ctx, "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		_ = env.Clientset.CoreV1().Pods(ns).Delete(ctx, fmt.Sprintf("db-%d", i), metav1.DeleteOptions{})
		waitGone(t, ns, fmt.Sprintf("db-%d", i), time.Minute)
	}
	if err := env.Clientset.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "data-db-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, func() error {
		if _, err := env.Clientset.CoreV1().PersistentVolumes().Get(ctx, pv, metav1.GetOptions{}); err == nil {
			return fmt.Errorf("volume %s still there", pv)
		}
		return nil
	})
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the volume's directory %s is still there (%v)", dir, err)
	}
}

// A hostNetwork pod keeps the host's network: what it serves on loopback
// the host reaches directly.
func TestHostNetworkPod(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	port := strconv.Itoa(controlplane.FreePort())
	p := processPod(ns, "hostnet", "mkdir -p /srv && echo on-the-host > /srv/index.html && cd /srv && exec /usr/bin/python3 -m http.server --bind 127.0.0.1 "+port)
	p.Spec.HostNetwork = true
	createPod(t, p)
	got := waitPod(t, ns, "hostnet", time.Minute, "Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	if got.Status.PodIP != "127.0.0.1" {
		t.Errorf("pod IP %q, want the node's 127.0.0.1", got.Status.PodIP)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		body, err := testkit.HTTPGet("http://127.0.0.1:" + port + "/")
		if err != nil || strings.TrimSpace(body) != "on-the-host" {
			return fmt.Errorf("GET from the host: %q, %v", body, err)
		}
		return nil
	})
}

// The API server reaches process pods and their Services for its proxy
// subresources (the way an operator outside the cluster reaches a pod's
// HTTP endpoint), through the process nodes' egress proxy.
func TestAPIServerProxiesToPodsAndServices(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	ctx := context.Background()
	createPod(t, webServer(ns, "web", "proxied"))
	waitPod(t, ns, "web", time.Minute, "Ready", ready)
	body, err := env.Clientset.CoreV1().Pods(ns).ProxyGet("http", "web", "8080", "/", nil).DoRaw(ctx)
	if err != nil || strings.TrimSpace(string(body)) != "proxied" {
		t.Fatalf("pods/proxy: %q, %v", body, err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"},
		Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
	}}
	if _, err := env.Clientset.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, func() error {
		body, err := env.Clientset.CoreV1().Services(ns).ProxyGet("http", "web", "http", "/", nil).DoRaw(ctx)
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(body)) != "proxied" {
			return fmt.Errorf("services/proxy: %q", body)
		}
		return nil
	})
}
