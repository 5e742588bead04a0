package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/manifests"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// The example is also an end-to-end fixture: it runs against a real
// control plane with a garbage collector.
func TestMain(m *testing.M) {
	os.Exit(testkit.Run(m, testkit.WithControlPlane(controlplane.Options{ControllerManager: true})))
}

func TestGreeter(t *testing.T) {
	greet(t, testkit.Env(t).Config)
}

// `setpoint generate` gives the greeter what it needs to run: applied to
// the cluster, its ServiceAccount runs the same scenario with no request
// refused.
func TestGreeterAsItsGeneratedServiceAccount(t *testing.T) {
	env := testkit.Env(t)
	install := env.Namespace(t)
	objs, err := manifests.Generate(manifests.Options{Name: "greeter", Namespace: install, Image: "example.com/greeter:1", Paths: []string{"."}})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range objs {
		if u.GetKind() == "Namespace" {
			continue // the test's own, already there
		}
		if err := env.Client.Apply(t.Context(), client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("test"), client.ForceOwnership); err != nil {
			t.Fatalf("apply %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
	refused := &testkit.Refused{}
	greet(t, refused.Wrap(testkit.Impersonate(env.Config, install, "greeter")))
	refused.Check(t)
}

// greet runs the greeter with cfg on a fresh namespace through its life:
// create, rename, an unlabelled ConfigMap left alone, delete.
func greet(t *testing.T, cfg *rest.Config) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, operator.Options{Name: "greeter", Namespaces: []string{ns}}) }()
	t.Cleanup(func() { cancel(); <-done })

	parent := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "world", Namespace: ns, Labels: map[string]string{Label: "true"}},
		Data:       map[string]string{"name": "World"},
	}
	ignored := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: ns}, Data: map[string]string{"name": "x"}}
	for _, cm := range []*corev1.ConfigMap{parent, ignored} {
		if err := env.Client.Create(t.Context(), cm); err != nil {
			t.Fatal(err)
		}
	}
	greetingIs := func(want string) {
		t.Helper()
		testkit.Eventually(t, 30*time.Second, func() error {
			var child corev1.ConfigMap
			if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "world-greeting"}, &child); err != nil {
				return err
			}
			if got := child.Data["greeting"]; got != want {
				return fmt.Errorf("greeting %q, want %q", got, want)
			}
			return nil
		})
	}
	greetingIs("Hello, World!")

	testkit.Eventually(t, 30*time.Second, func() error {
		if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(parent), parent); err != nil {
			return err
		}
		parent.Data["name"] = "Setpoint"
		return env.Client.Update(t.Context(), parent)
	})
	greetingIs("Hello, Setpoint!")

	err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "plain-greeting"}, &corev1.ConfigMap{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("unlabelled ConfigMap was greeted (%v)", err)
	}

	if err := env.Client.Delete(t.Context(), parent); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyGone(t, env.Client, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "world-greeting"}}, 60*time.Second)
}
