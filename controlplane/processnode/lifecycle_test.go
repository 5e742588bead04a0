package processnode_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/setpoint-dev/setpoint/testkit"
)

func containerStatus(p *corev1.Pod, name string) corev1.ContainerStatus {
	for _, s := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if s.Name == name {
			return s
		}
	}
	return corev1.ContainerStatus{}
}

// A container that fails is restarted as restartPolicy says, with its exit
// code in lastState, and `kubectl logs --previous` shows the run before.
func TestRestartPolicyAndExitCodes(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	p := processPod(ns, "crash", `echo "run at $(date +%s%N)"; exit 3`)
	p.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	createPod(t, p)
	got := waitPod(t, ns, "crash", time.Minute, "restarted twice", func(p *corev1.Pod) bool {
		return containerStatus(p, "main").RestartCount >= 2
	})
	last := containerStatus(got, "main").LastTerminationState.Terminated
	if last == nil || last.ExitCode != 3 || last.Reason != "Error" {
		t.Fatalf("lastState.terminated = %+v, want exit code 3, reason Error", last)
	}
	if got.Status.Phase != corev1.PodRunning {
		t.Errorf("phase %s while restarting, want Running", got.Status.Phase)
	}
	out := mustKubectl(t, "-n", ns, "logs", "crash", "--previous")
	if !strings.Contains(out, "run at") {
		t.Errorf("logs --previous: %q", out)
	}

	// restartPolicy Never: one run, the pod fails with the container's code.
	never := processPod(ns, "once", `echo bye; exit 7`)
	never.Spec.RestartPolicy = corev1.RestartPolicyNever
	createPod(t, never)
	got = waitPod(t, ns, "once", time.Minute, "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if st := containerStatus(got, "main"); st.RestartCount != 0 || st.State.Terminated == nil || st.State.Terminated.ExitCode != 7 {
		t.Errorf("container status %+v, want exit code 7 and no restart", st)
	}
	if out := mustKubectl(t, "-n", ns, "logs", "once"); strings.TrimSpace(out) != "bye" {
		t.Errorf("logs of the ended container: %q", out)
	}

	// A command that does not exist is reported, not retried silently.
	missing := processPod(ns, "missing", "")
	missing.Spec.Containers[0].Command = []string{"no-such-program-here"}
	missing.Spec.RestartPolicy = corev1.RestartPolicyNever
	createPod(t, missing)
	got = waitPod(t, ns, "missing", time.Minute, "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if st := containerStatus(got, "main").State.Terminated; st == nil || st.ExitCode != 127 {
		t.Errorf("missing command: %+v, want exit code 127", st)
	}
}

// Init containers run in order, each to completion, before the containers;
// they share the pod's volumes.
func TestInitContainersRunInOrder(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	p := processPod(ns, "inits", `cat /work/order; exec sleep 3600`)
	mount := []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}
	p.Spec.Containers[0].VolumeMounts = mount
	p.Spec.Volumes = []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	for _, n := range []string{"first", "second"} {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{
			Name: n, Image: "debian:12", VolumeMounts: mount,
			Command: []string{"sh", "-c", "sleep 0.3; echo " + n + " >> /work/order"},
		})
	}
	createPod(t, p)
	waitPod(t, ns, "inits", time.Minute, "Ready", ready)
	out := eventuallyKubectl(t, "second", "-n", ns, "logs", "inits", "-c", "main")
	if strings.TrimSpace(out) != "first\nsecond" {
		t.Errorf("order: %q", out)
	}
	got := getPod(t, ns, "inits")
	for _, n := range []string{"first", "second"} {
		if st := containerStatus(got, n).State.Terminated; st == nil || st.Reason != "Completed" {
			t.Errorf("init container %s: %+v", n, st)
		}
	}
}

// Readiness follows the probe both ways; a failing liveness probe restarts
// the container.
func TestProbesDriveReadyAndRestarts(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	p := processPod(ns, "probed", `touch /tmp/ready; exec python3 -m http.server 8080`)
	c := &p.Spec.Containers[0]
	c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	c.ReadinessProbe = &corev1.Probe{PeriodSeconds: 1, FailureThreshold: 1,
		ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-e", "/tmp/ready"}}}}
	c.LivenessProbe = &corev1.Probe{PeriodSeconds: 1, FailureThreshold: 2,
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("http")}}}
	c.StartupProbe = &corev1.Probe{PeriodSeconds: 1, FailureThreshold: 30,
		ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}}
	createPod(t, p)
	waitPod(t, ns, "probed", time.Minute, "Ready", ready)
	mustKubectl(t, "-n", ns, "exec", "probed", "--", "rm", "/tmp/ready")
	waitPod(t, ns, "probed", 30*time.Second, "not Ready", func(p *corev1.Pod) bool { return !ready(p) })
	mustKubectl(t, "-n", ns, "exec", "probed", "--", "touch", "/tmp/ready")
	waitPod(t, ns, "probed", 30*time.Second, "Ready again", ready)

	// Stop the HTTP server without ending the container's process: the
	// liveness probe fails and the kubelet's answer is a restart.
	mustKubectl(t, "-n", ns, "exec", "probed", "--", "pkill", "-STOP", "-f", "[h]ttp.server 8080")
	got := waitPod(t, ns, "probed", time.Minute, "restarted by liveness", func(p *corev1.Pod) bool {
		return containerStatus(p, "main").RestartCount >= 1
	})
	if last := containerStatus(got, "main").LastTerminationState.Terminated; last == nil || last.Message != "liveness probe failed" {
		t.Errorf("last termination %+v, want the liveness probe named", last)
	}
	waitPod(t, ns, "probed", time.Minute, "Ready after the restart", ready)
	testkit.WaitEvent(t, got, "failed liveness probe", 10*time.Second)
}

// Deleting a pod runs its preStop hook, sends SIGTERM, and SIGKILL only
// after terminationGracePeriodSeconds.
func TestGracefulTermination(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	host := t.TempDir()
	// The trap logs SIGTERM and keeps running: only SIGKILL ends it.
	p := processPod(ns, "graceful", `trap 'echo TERM >> /out/log' TERM; echo started >> /out/log; while :; do sleep 0.1; done`)
	p.Spec.TerminationGracePeriodSeconds = ptr(int64(3))
	c := &p.Spec.Containers[0]
	c.VolumeMounts = []corev1.VolumeMount{{Name: "out", MountPath: "/out"}}
	c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo preStop >> /out/log"}}}}
	p.Spec.Volumes = []corev1.Volume{{Name: "out", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: host}}}}
	createPod(t, p)
	waitPod(t, ns, "graceful", time.Minute, "Ready", ready)
	start := time.Now()
	if err := testkit.Env(t).Clientset.CoreV1().Pods(ns).Delete(context.Background(), "graceful", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, ns, "graceful", 30*time.Second)
	took := time.Since(start)
	b, _ := os.ReadFile(filepath.Join(host, "log"))
	if got := strings.Fields(string(b)); strings.Join(got, " ") != "started preStop TERM" {
		t.Errorf("log %q, want started, preStop, TERM in that order", got)
	}
	if took < 3*time.Second {
		t.Errorf("pod gone after %s: SIGKILL came before the 3 s grace period", took)
	}
}

// A sidecar (an init container with restartPolicy Always) starts before
// the containers, runs beside them, and ends once they have completed.
func TestSidecarRunsBesideTheContainers(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	p := processPod(ns, "sidecar", `cat /shared/from-sidecar; echo done`)
	p.Spec.RestartPolicy = corev1.RestartPolicyNever
	mount := []corev1.VolumeMount{{Name: "shared", MountPath: "/shared"}}
	p.Spec.Containers[0].VolumeMounts = mount
	p.Spec.Volumes = []corev1.Volume{{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	always := corev1.ContainerRestartPolicyAlways
	p.Spec.InitContainers = []corev1.Container{{
		Name: "helper", Image: "debian:12", RestartPolicy: &always, VolumeMounts: mount,
		Command: []string{"sh", "-c", "echo hello-from-sidecar > /shared/from-sidecar; exec sleep 3600"},
		StartupProbe: &corev1.Probe{PeriodSeconds: 1,
			ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-e", "/shared/from-sidecar"}}}},
	}}
	createPod(t, p)
	got := waitPod(t, ns, "sidecar", time.Minute, "Succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	if out := mustKubectl(t, "-n", ns, "logs", "sidecar", "-c", "main"); out != "hello-from-sidecar\ndone\n" {
		t.Errorf("the container's log %q: the sidecar did not start first", out)
	}
	waitPod(t, ns, "sidecar", 30*time.Second, "sidecar stopped", func(p *corev1.Pod) bool {
		return containerStatus(p, "helper").State.Terminated != nil
	})
	_ = got
}

// Pods deleted while they start go away, their processes with them: a
// container that started after the pod's termination looked for running
// ones used to be left running, and its pod Terminating for ever.
func TestDeletedWhileStarting(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	const n = 12
	for i := range n {
		p := processPod(ns, "early-"+strconv.Itoa(i), "exec sleep 3600")
		p.Spec.TerminationGracePeriodSeconds = ptr(int64(2))
		createPod(t, p)
		// Delete at different moments of the start: at once, then later.
		time.Sleep(time.Duration(i) * 25 * time.Millisecond)
		if err := env.Clientset.CoreV1().Pods(ns).Delete(context.Background(), p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		waitGone(t, ns, "early-"+strconv.Itoa(i), 30*time.Second)
	}
}

// A new image for a running container restarts it at once, with its
// preStop hook and whatever the restart policy (the kubelet restarts a
// container whose definition changed); the status names the new image.
func TestImageChangeRestartsTheContainer(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	host := t.TempDir()
	p := processPod(ns, "respec", `echo "started $IMAGE_SEEN" >> /out/log; trap 'exit 0' TERM; while :; do sleep 0.1; done`)
	p.Spec.RestartPolicy = corev1.RestartPolicyNever
	c := &p.Spec.Containers[0]
	c.VolumeMounts = []corev1.VolumeMount{{Name: "out", MountPath: "/out"}}
	c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo preStop >> /out/log"}}}}
	p.Spec.Volumes = []corev1.Volume{{Name: "out", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: host}}}}
	createPod(t, p)
	waitPod(t, ns, "respec", time.Minute, "Ready", ready)

	mustKubectl(t, "-n", ns, "set", "image", "pod/respec", "main=debian:13")
	got := waitPod(t, ns, "respec", time.Minute, "restarted on debian:13", func(p *corev1.Pod) bool {
		st := containerStatus(p, "main")
		return st.RestartCount == 1 && st.Image == "debian:13" && st.State.Running != nil
	})
	if got.Status.Phase != corev1.PodRunning {
		t.Errorf("phase %s, want Running (restartPolicy Never does not hold a definition change back)", got.Status.Phase)
	}
	if last := containerStatus(got, "main").LastTerminationState.Terminated; last == nil || last.Message != "definition changed" {
		t.Errorf("last termination %+v, want the definition change named", last)
	}
	b, _ := os.ReadFile(filepath.Join(host, "log"))
	if got := strings.Fields(string(b)); strings.Join(got, " ") != "started preStop started" {
		t.Errorf("log %q, want a start, the preStop hook, a second start", got)
	}
	testkit.WaitEvent(t, got, "Container main definition changed, will be restarted", 10*time.Second)

}
