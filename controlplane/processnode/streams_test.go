package processnode_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/testkit"
)

// kubectl exec -it gets a terminal in the pod; without -t it gets none.
func TestExecWithATerminal(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	createPod(t, processPod(ns, "tty", "exec sleep 3600"))
	waitPod(t, ns, "tty", time.Minute, "Ready", ready)
	run := func(tty bool, stdin string) string {
		req := env.Clientset.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name("tty").SubResource("exec").
			VersionedParams(&corev1.PodExecOptions{Container: "main", Command: []string{"sh", "-c", "if [ -t 0 ]; then echo tty; else echo no-tty; fi; read line; echo got $line"},
				Stdin: true, Stdout: true, Stderr: !tty, TTY: tty}, scheme.ParameterCodec)
		ex, err := remotecommand.NewSPDYExecutor(env.Config, "POST", req.URL())
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: stderrOf(tty), Tty: tty})
		if err != nil {
			t.Fatalf("exec (tty %v): %v: %s", tty, err, out.String())
		}
		return strings.ReplaceAll(out.String(), "\r", "")
	}
	// A terminal echoes the input, which may come before the program's line.
	if out := run(true, "hello\n"); !strings.Contains("\n"+out, "\ntty\n") || !strings.Contains(out, "got hello") {
		t.Errorf("with a terminal: %q", out)
	}
	if out := run(false, "hello\n"); out != "no-tty\ngot hello\n" {
		t.Errorf("without a terminal: %q", out)
	}
	// A failing command's exit code reaches kubectl.
	_, err := kubectl(t, "", "-n", ns, "exec", "tty", "--", "sh", "-c", "exit 42")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 42 {
		t.Errorf("kubectl exec of exit 42: %v", err)
	}
}

// kubectl logs -f follows what the container writes, and ends with it.
func TestLogsFollow(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	p := processPod(ns, "ticker", `for i in 1 2 3 4 5; do echo tick $i; sleep 0.3; done`)
	p.Spec.RestartPolicy = corev1.RestartPolicyNever
	createPod(t, p)
	waitPod(t, ns, "ticker", time.Minute, "started", func(p *corev1.Pod) bool { return p.Status.Phase != corev1.PodPending })
	bin, _ := controlplane.FindBinary("kubectl")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--kubeconfig", testkit.Env(t).ControlPlane.KubeconfigPath, "-n", ns, "logs", "-f", "ticker").CombinedOutput()
	if err != nil {
		t.Fatalf("logs -f: %v: %s", err, out)
	}
	if !strings.HasSuffix(string(out), "tick 5\n") {
		t.Errorf("logs -f ended with %q, want the last line", out)
	}
}

// Stopping a plane with process nodes leaves no process, mount, network
// namespace or directory behind.
func TestStopLeavesNothingBehind(t *testing.T) {
	opts := controlplane.Full(0)
	opts.ProcessNodes = 1
	opts.UnsafeNoFsync = true
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cp, err := controlplane.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	dir := cp.Dir()
	stopped := false
	defer func() {
		if !stopped {
			_ = cp.Stop()
		}
	}()
	cs := clientsetFor(t, cp)
	p := processPod("default", "left", `trap '' TERM; sleep 3600 & sleep 3600`)
	if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, func() error { return podRunning(ctx, cs, "default", "left") })
	before := processesUnder(dir)
	if len(before) == 0 {
		t.Fatalf("no process of the plane found under %s", dir)
	}
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if left := processesUnder(dir); len(left) > 0 {
		t.Errorf("processes left after Stop: %v", left)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("directory %s left after Stop (%v)", dir, err)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), dir) {
		t.Errorf("mounts of %s left after Stop", dir)
	}
	// The namespaces held by the plane's processes went with them.
	for _, pid := range before {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("process %d still alive", pid)
		}
	}
}

// processesUnder lists processes whose command line or root names dir: the
// plane's components and every pod's sandbox and containers.
func processesUnder(dir string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid := 0
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		root, _ := os.Readlink(filepath.Join("/proc", e.Name(), "root"))
		if strings.Contains(string(cmdline), dir) || strings.HasPrefix(root, dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func stderrOf(tty bool) io.Writer {
	if tty {
		return nil
	}
	return &bytes.Buffer{}
}
