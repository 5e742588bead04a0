package processnode_test

import (
	"strings"
	"testing"
	"time"

	"github.com/setpoint-dev/setpoint/testkit"
)

// The README's tour: examples/process-pod.yaml as a user applies it.
func TestExampleProcessPod(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	mustKubectl(t, "-n", ns, "apply", "-f", "../../examples/process-pod.yaml")
	got := waitPod(t, ns, "hello", time.Minute, "Ready", ready)
	if got.Spec.NodeName != "process-node-0" && got.Spec.NodeName != "process-node-1" {
		t.Errorf("scheduled on %s", got.Spec.NodeName)
	}
	if out := mustKubectl(t, "-n", ns, "logs", "hello"); !strings.Contains(out, "serving /site on port 8000") {
		t.Errorf("logs: %q", out)
	}
	if out := mustKubectl(t, "-n", ns, "exec", "hello", "--", "ps", "ax"); strings.Count(strings.TrimSpace(out), "\n") > 3 {
		t.Errorf("ps ax in the pod shows more than the pod's processes:\n%s", out)
	}
	port := portForward(t, ns, "pod/hello", "8000")
	body, err := testkit.HTTPGet("http://127.0.0.1:" + port + "/")
	if err != nil || !strings.Contains(body, "Hello from a process pod") {
		t.Errorf("port-forward: %q, %v", body, err)
	}
	mustKubectl(t, "-n", ns, "delete", "-f", "../../examples/process-pod.yaml")
}
