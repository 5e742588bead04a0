package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/setpoint-dev/setpoint/controlplane"
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
		"--leader-elect", "--leader-election-namespace", ns, "--namespace", ns, "--install-crds")

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

// TestRunWithoutCRDsSaysWhy: an operator whose CRD the cluster lacks
// stops `setpoint run` with what to do; leaving it out runs the rest.
func TestRunWithoutCRDsSaysWhy(t *testing.T) {
	env := testkit.Env(t)
	// Another test may have installed them on this package's plane.
	crds, err := apiextensionsclient.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range crdsOf(builtins) {
		err := crds.ApiextensionsV1().CustomResourceDefinitions().Delete(t.Context(), c.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		eventually(t, func() error {
			_, err := crds.ApiextensionsV1().CustomResourceDefinitions().Get(t.Context(), c.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("CRD %s still there (%v)", c.Name, err)
		})
	}
	run := startSetpoint(t, "run", "--kubeconfig", env.ControlPlane.KubeconfigPath,
		"--health-probe-bind-address", "0", "--metrics-bind-address", "0")
	select {
	case err := <-run.exited:
		if err == nil {
			t.Fatal("setpoint run without its CRDs exited 0")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("setpoint run without its CRDs did not exit")
	}
	testkit.Eventually(t, 5*time.Second, func() error {
		if out := run.output(); !strings.Contains(out, "the app operator needs the CRD apps.apps.setpoint.dev") || !strings.Contains(out, "--install-crds") {
			return fmt.Errorf("output does not say what is missing and what to do: %q", out)
		}
		return nil
	})

	probe := testkit.FreeAddr(t)
	run = startSetpoint(t, "run", "--kubeconfig", env.ControlPlane.KubeconfigPath, "--operators", "",
		"--health-probe-bind-address", probe, "--metrics-bind-address", "0")
	eventually(t, func() error { _, err := testkit.HTTPGet("http://" + probe + "/readyz"); return err })
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

// `setpoint generate` prints the greeter's install YAML from its code, and
// writes it as a kustomize directory that kubectl can build.
func TestGenerate(t *testing.T) {
	generate := func(args ...string) (string, error) {
		out, err := exec.Command(setpointBin, append([]string{"generate"}, args...)...).CombinedOutput()
		return string(out), err
	}
	greeter := []string{"--name", "greeter", "--image", "example.com/greeter:1", "--paths", "../../examples/greeter"}
	out, err := generate(greeter...)
	if err != nil {
		t.Fatalf("setpoint generate: %v\n%s", err, out)
	}
	for _, want := range []string{"kind: ClusterRole\nmetadata:\n  name: greeter\n", "- configmaps", "kind: Deployment", "namespace: greeter-system", "image: example.com/greeter:1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}

	dir := filepath.Join(t.TempDir(), "greeter")
	if out, err := generate(append(greeter, "-o", dir)...); err != nil {
		t.Fatalf("setpoint generate -o: %v\n%s", err, out)
	}
	kubectl, err := controlplane.FindBinary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	built, err := exec.Command(kubectl, "kustomize", dir).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", dir, err)
	}
	if !strings.Contains(string(built), "kind: ServiceAccount") {
		t.Errorf("kustomize output lacks the ServiceAccount:\n%s", built)
	}

	if out, err := generate("--image", "x"); err == nil || !strings.Contains(out, `required flag(s) "name" not set`) {
		t.Errorf("generate without --name: %v\n%s", err, out)
	}
}

// TestInstallsAreNamed: two installs with different --name run side by
// side, each with its own field manager, bookkeeping prefix and Lease;
// a second active instance of one name is refused, naming the holder.
func TestInstallsAreNamed(t *testing.T) {
	env := testkit.Env(t)
	home, ns1, ns2 := env.Namespace(t), env.Namespace(t), env.Namespace(t)
	kc := env.ControlPlane.KubeconfigPath
	start := func(name, ns string, extra ...string) (*command, string) {
		probe := testkit.FreeAddr(t)
		args := append([]string{"run", "--kubeconfig", kc, "--name", name, "--namespace", ns, "--leader-election-namespace", home,
			"--operators", "app", "--health-probe-bind-address", probe, "--metrics-bind-address", "0"}, extra...)
		return startSetpoint(t, args...), probe
	}
	one, probe1 := start("one", ns1, "--install-crds")
	eventually(t, func() error { _, err := testkit.HTTPGet("http://" + probe1 + "/readyz"); return err })
	two, probe2 := start("two", ns2)
	eventually(t, func() error { _, err := testkit.HTTPGet("http://" + probe2 + "/readyz"); return err })

	for _, tc := range []struct{ ns, name string }{{ns1, "one"}, {ns2, "two"}} {
		app := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apps.setpoint.dev/v1alpha1", "kind": "App",
			"metadata": map[string]any{"name": "shop", "namespace": tc.ns},
			"spec":     map[string]any{"image": "example/shop:1", "processes": []any{map[string]any{"name": "web"}}},
		}}
		if err := env.Client.Create(t.Context(), app); err != nil {
			t.Fatal(err)
		}
		eventually(t, func() error {
			d, err := env.Clientset.AppsV1().Deployments(tc.ns).Get(t.Context(), "shop-web", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if _, ok := d.Labels[tc.name+".setpoint.dev/owner-uid"]; !ok {
				return fmt.Errorf("labels %v: not %s's prefix", d.Labels, tc.name)
			}
			for _, m := range d.ManagedFields {
				if m.Operation == metav1.ManagedFieldsOperationApply && m.Manager == tc.name {
					return nil
				}
			}
			return fmt.Errorf("no apply by field manager %s", tc.name)
		})
	}

	dup, _ := start("one", env.Namespace(t))
	dup.waitFailure(t, `another instance named "one" is active: Lease `+home+`/one is held by `)
	one.stop(t, syscall.SIGTERM, 60*time.Second)
	two.stop(t, syscall.SIGTERM, 60*time.Second)

	// A stray run on a laptop, beside an install of the default name: both
	// default to the kustomize install's namespace for their Lease, so
	// the stray is refused while the install runs.
	probe := testkit.FreeAddr(t)
	installed := startSetpoint(t, "run", "--kubeconfig", kc, "--leader-elect", "--operators", "",
		"--health-probe-bind-address", probe, "--metrics-bind-address", "0")
	// It, not a holder left by an earlier run of this package whose Lease
	// has not expired yet: a stray started then would (rightly) find no
	// active instance.
	installed.waitLine(t, "Successfully acquired lease", 90*time.Second)
	stray := startSetpoint(t, "run", "--kubeconfig", kc, "--operators", "", "--health-probe-bind-address", "0", "--metrics-bind-address", "0")
	stray.waitFailure(t, `another instance named "setpoint" is active: Lease setpoint-system/setpoint is held by `)
	installed.stop(t, syscall.SIGTERM, 60*time.Second)
}
