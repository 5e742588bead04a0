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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/setpoint-dev/setpoint/testkit"
)

// TestRunAgainstACluster runs `setpoint run` against the test kit's
// control plane with leader election, checks its probes and metrics
// answer and that it holds the Lease, then stops it with SIGTERM.
func TestRunAgainstACluster(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	b, err := os.ReadFile(env.ControlPlane.KubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kubeconfig, b, 0o600); err != nil {
		t.Fatal(err)
	}
	probe, metrics := testkit.FreeAddr(t), testkit.FreeAddr(t)
	run := startSetpoint(t, "run", "--kubeconfig", kubeconfig,
		"--health-probe-bind-address", probe, "--metrics-bind-address", metrics,
		"--leader-elect", "--leader-election-namespace", ns, "--namespace", ns)

	for _, url := range []string{"http://" + probe + "/healthz", "http://" + probe + "/readyz", "http://" + metrics + "/metrics"} {
		eventually(t, func() error { _, err := testkit.HTTPGet(url); return err })
	}
	eventually(t, func() error {
		lease, err := env.Clientset.CoordinationV1().Leases(ns).Get(context.Background(), "setpoint", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
			return fmt.Errorf("lease has no holder")
		}
		return nil
	})
	run.stop(t, syscall.SIGTERM, 60*time.Second)
}

func TestRunWithoutClusterSaysWhy(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	run := startSetpoint(t, "run", "--kubeconfig", missing, "--health-probe-bind-address", "0", "--metrics-bind-address", "0")
	select {
	case err := <-run.exited:
		if err == nil {
			t.Fatal("setpoint run with a missing kubeconfig exited 0")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("setpoint run with a missing kubeconfig did not exit")
	}
	testkit.Eventually(t, 5*time.Second, func() error {
		if out := run.output(); !strings.Contains(out, "kubeconfig "+missing) {
			return fmt.Errorf("output does not name the kubeconfig: %q", out)
		}
		return nil
	})
}

func TestVersion(t *testing.T) {
	v := startSetpoint(t, "version")
	line := v.waitLine(t, "setpoint ", 30*time.Second)
	if !strings.Contains(line, "linux/") {
		t.Errorf("version line %q lacks the platform", line)
	}
}
