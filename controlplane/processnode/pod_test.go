package processnode_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/setpoint-dev/setpoint/testkit"
)

// A pod's command runs for real with its env and volumes: kubectl logs
// shows what it printed, kubectl exec runs inside its view.
func TestPodRunsWithEnvAndVolumes(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	ctx := context.Background()
	_, err := env.Clientset.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"greeting": "hello", "colour": "blue"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = env.Clientset.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "sec"}, StringData: map[string]string{"token": "s3cr3t"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := processPod(ns, "envvol", `echo "name=$POD_NAME ns=$POD_NS colour=$COLOUR token=$TOKEN cpu=$CPU greeting=$(cat /etc/cfg/greeting)"; echo data > /data/file; exec sleep 3600`)
	c := &p.Spec.Containers[0]
	c.Env = []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Key: "token"}}},
		{Name: "CPU", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}},
	}
	c.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}, Prefix: ""}}
	c.Env = append(c.Env, corev1.EnvVar{Name: "COLOUR", Value: "$(colour)"})
	c.VolumeMounts = []corev1.VolumeMount{{Name: "cfg", MountPath: "/etc/cfg"}, {Name: "data", MountPath: "/data"}}
	p.Spec.Volumes = []corev1.Volume{
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
		{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	createPod(t, p)
	got := waitPod(t, ns, "envvol", time.Minute, "Ready", ready)
	if got.Status.PodIP == "" || !strings.HasPrefix(got.Status.PodIP, "10.244.") {
		t.Errorf("pod IP %q, want one of 10.244.128.0/17", got.Status.PodIP)
	}
	out := eventuallyKubectl(t, "greeting=hello", "-n", ns, "logs", "envvol")
	if want := "name=envvol ns=" + ns + " colour=blue token=s3cr3t cpu=16 greeting=hello"; !strings.Contains(out, want) {
		t.Errorf("logs %q, want %q", out, want)
	}
	if out := mustKubectl(t, "-n", ns, "exec", "envvol", "--", "cat", "/data/file"); strings.TrimSpace(out) != "data" {
		t.Errorf("exec cat /data/file: %q", out)
	}
	if out := mustKubectl(t, "-n", ns, "exec", "envvol", "--", "hostname"); strings.TrimSpace(out) != "envvol" {
		t.Errorf("hostname in the pod: %q", out)
	}
	// The mount points exist only in the pod's view.
	for _, dir := range []string{"/data", "/etc/cfg"} {
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("%s exists on the host: the pod's mounts leaked", dir)
		}
	}
	mustKubectl(t, "-n", ns, "delete", "pod", "envvol", "--wait=false")
	waitGone(t, ns, "envvol", 30*time.Second)
}
