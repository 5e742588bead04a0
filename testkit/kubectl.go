package testkit

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"os/exec"

	"github.com/setpoint-dev/setpoint/controlplane"
)

// Kubectl runs the kubectl of bin/ against the test's control plane, as a
// user would, with stdin given, and returns its combined output. It is
// killed after a minute (KubectlWithin sets another limit).
func Kubectl(t testing.TB, stdin string, args ...string) (string, error) {
	t.Helper()
	return KubectlWithin(t, time.Minute, stdin, args...)
}

// KubectlWithin is Kubectl killed after timeout, for commands meant to
// run long (a workload driven through kubectl exec).
func KubectlWithin(t testing.TB, timeout time.Duration, stdin string, args ...string) (string, error) {
	t.Helper()
	bin, err := controlplane.FindBinary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", Env(t).ControlPlane.KubeconfigPath}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

// MustKubectl is Kubectl that fails the test on an error.
func MustKubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := Kubectl(t, "", args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// EventuallyKubectl repeats a kubectl command until it succeeds with an
// output that contains want, and returns that output.
func EventuallyKubectl(t testing.TB, timeout time.Duration, want string, args ...string) string {
	t.Helper()
	var out string
	err := Poll(context.Background(), timeout, func() error {
		var err error
		out, err = Kubectl(t, "", args...)
		if err == nil && strings.Contains(out, want) {
			return nil
		}
		return fmt.Errorf("kubectl %s: %v: %q lacks %q", strings.Join(args, " "), err, out, want)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
