package install

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	celeryv1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/manifests"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operators/app"
	"github.com/setpoint-dev/setpoint/operators/celery"
	"github.com/setpoint-dev/setpoint/operators/reloader"
	"github.com/setpoint-dev/setpoint/testkit"
	"github.com/setpoint-dev/setpoint/testkit/brokers"
)

const wait = 60 * time.Second

var scheme = testkit.NewScheme(appsv1alpha1.AddToScheme, celeryv1alpha1.AddToScheme)

func TestMain(m *testing.M) {
	os.Exit(testkit.Run(m, testkit.WithControlPlane(controlplane.Full(1)), testkit.WithScheme(scheme)))
}

// render runs a tool (kubectl kustomize, helm template) from bin/ and
// returns the objects it printed.
func render(t *testing.T, tool string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	bin, err := controlplane.FindBinary(tool)
	if err != nil {
		t.Fatalf("%v (run `make tools`)", err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, stderr.String())
	}
	objs, err := manifests.Read(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("%s output: %v", tool, err)
	}
	return objs
}

// apply applies objs with server-side apply, as `kubectl apply
// --server-side` does: first as a dry run, then for real. CRDs are
// waited for until established.
func apply(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	c := testkit.Env(t).Client
	for _, dry := range []bool{true, false} {
		for _, u := range objs {
			opts := []client.ApplyOption{client.FieldOwner("install-test"), client.ForceOwnership}
			if dry {
				opts = append(opts, client.DryRunAll)
			}
			if err := c.Apply(t.Context(), client.ApplyConfigurationFromUnstructured(u.DeepCopy()), opts...); err != nil {
				t.Fatalf("apply (dry run %v) %s %s: %v", dry, u.GetKind(), u.GetName(), err)
			}
		}
	}
	testkit.Eventually(t, wait, func() error {
		for _, u := range objs {
			if u.GetKind() != "CustomResourceDefinition" {
				continue
			}
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(u.GroupVersionKind())
			if err := c.Get(t.Context(), client.ObjectKeyFromObject(u), got); err != nil {
				return err
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			established := slices.ContainsFunc(conds, func(c any) bool {
				m, _ := c.(map[string]any)
				return m["type"] == "Established" && m["status"] == "True"
			})
			if !established {
				return fmt.Errorf("CRD %s not established", u.GetName())
			}
		}
		return nil
	})
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			return u
		}
	}
	t.Fatalf("no %s %s in the manifests", kind, name)
	return nil
}

// checkManager checks the manager Deployment is what the install story
// promises: two replicas with leader election, non-root with a read-only
// root filesystem, resources and probes, and the operators named.
func checkManager(t *testing.T, u *unstructured.Unstructured, operators ...string) {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := runtimeConvert(u, d); err != nil {
		t.Fatal(err)
	}
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	checks := []struct {
		what string
		ok   bool
	}{
		{"2 replicas", d.Spec.Replicas != nil && *d.Spec.Replicas == 2},
		{"leader election", slices.Contains(c.Args, "--leader-elect")},
		{"operators " + strings.Join(operators, ","), slices.Equal(enabledOperators(c.Args), operators)},
		{"non-root", pod.SecurityContext != nil && pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot},
		{"read-only root filesystem", c.SecurityContext != nil && c.SecurityContext.ReadOnlyRootFilesystem != nil && *c.SecurityContext.ReadOnlyRootFilesystem},
		{"no privilege escalation", c.SecurityContext != nil && c.SecurityContext.AllowPrivilegeEscalation != nil && !*c.SecurityContext.AllowPrivilegeEscalation},
		{"resources", c.Resources.Requests.Memory() != nil && !c.Resources.Limits.Memory().IsZero()},
		{"probes", c.LivenessProbe != nil && c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet.Path == "/readyz"},
		{"webhook service", slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--webhook-service=") })},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("manager Deployment: want %s; args %q", ch.what, c.Args)
		}
	}
}

// enabledOperators reads the --operators flags (repeatable, each a comma
// list) the way pflag does.
func enabledOperators(args []string) []string {
	var out []string
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--operators="); ok && v != "" {
			out = append(out, strings.Split(v, ",")...)
		}
	}
	return out
}

// can asks the API server whether the ServiceAccount may do verb on
// resource (group/resource[/subresource][@name]) in namespace ("" for
// all).
func can(t *testing.T, sa, verb, resource, namespace string) bool {
	t.Helper()
	resource, name, _ := strings.Cut(resource, "@")
	group, res, _ := strings.Cut(resource, "/")
	res, sub, _ := strings.Cut(res, "/")
	ns, _, _ := strings.Cut(strings.TrimPrefix(sa, "system:serviceaccount:"), ":")
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: namespace, Verb: verb, Group: group, Resource: res, Subresource: sub, Name: name,
		},
	}}
	if err := testkit.Env(t).Client.Create(t.Context(), sar); err != nil {
		t.Fatalf("SubjectAccessReview: %v", err)
	}
	return sar.Status.Allowed
}

type access struct{ verb, resource, namespace string }

func (a access) String() string {
	where := "cluster-wide"
	if a.namespace != "" {
		where = "in " + a.namespace
	}
	return a.verb + " " + a.resource + " " + where
}

func checkAccess(t *testing.T, sa string, allowed, denied []access) {
	t.Helper()
	for _, a := range allowed {
		if !can(t, sa, a.verb, a.resource, a.namespace) {
			t.Errorf("%s may not %s; the operators need it", sa, a)
		}
	}
	for _, a := range denied {
		if can(t, sa, a.verb, a.resource, a.namespace) {
			t.Errorf("%s may %s; it should not", sa, a)
		}
	}
}

// runAs runs the named built-in operators in this process as the
// ServiceAccount sa (impersonated), the way the manifests run them: as
// the install named like the account, watching watch (all namespaces
// when empty), with leader election, the webhook certificate and the
// digest key in ns.
func runAs(t *testing.T, sa, ns, certSecret string, watch []string, operators ...string) *testkit.Refused {
	t.Helper()
	f := &testkit.Refused{}
	name := strings.TrimPrefix(sa, "system:serviceaccount:"+ns+":")
	cfg := f.Wrap(testkit.Impersonate(testkit.Env(t).Config, ns, name))
	wh := testkit.Webhooks(t)
	wh.CertSecret = types.NamespacedName{Namespace: ns, Name: certSecret}
	op, err := operator.New(cfg, operator.Options{
		Name: name, Prefix: name + ".setpoint.dev", Scheme: scheme, MetricsAddr: "0", ProbeAddr: "0", Namespaces: watch,
		LeaderElection:  &operator.LeaderElection{Namespace: ns},
		Webhooks:        wh,
		DigestKeySecret: types.NamespacedName{Namespace: ns, Name: name + "-digest-key"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range operators {
		switch name {
		case "app":
			err = app.Setup(op)
		case "celery":
			err = celery.Setup(op, celery.Options{})
		case "reloader":
			err = reloader.Setup(op, reloader.Options{Quiet: -1})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	testkit.StartOperator(t, op)
	// The webhook configurations outlive this process; a later test must
	// not be sent to its closed port.
	t.Cleanup(func() {
		ctx := context.Background()
		c := testkit.Env(t).Client
		for _, obj := range []client.Object{&admissionregistrationv1.ValidatingWebhookConfiguration{}, &admissionregistrationv1.MutatingWebhookConfiguration{}} {
			obj.SetName(name)
			if err := c.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
				t.Logf("delete webhook configuration: %v", err)
			}
		}
	})
	return f
}

func serviceAccount(ns, name string) string { return "system:serviceaccount:" + ns + ":" + name }

func secret(ns, name string, data map[string]string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}
}

func brokerCluster(ns, name, secretName string) *celeryv1alpha1.CeleryCluster {
	return &celeryv1alpha1.CeleryCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: celeryv1alpha1.CeleryClusterSpec{
			Image: "example/tasks:1", App: "tasks",
			Broker: celeryv1alpha1.Broker{URLSecretRef: corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: secretName}, Key: "url"}},
			Pools:        []celeryv1alpha1.Pool{{Name: "default", Queues: []string{"work"}, MaxReplicas: 2, TargetBacklog: 2}},
			PollInterval: &metav1.Duration{Duration: 200 * time.Millisecond},
		},
	}
}

// waitBrokerReachable waits for the cluster's workers and its
// BrokerReachable=True: the operator read its broker Secret and polled.
func waitBrokerReachable(t *testing.T, cc *celeryv1alpha1.CeleryCluster) {
	t.Helper()
	c := testkit.Env(t).Client
	testkit.Eventually(t, wait, func() error {
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: cc.Namespace, Name: cc.Name + "-default"}, &appsv1.Deployment{}); err != nil {
			return err
		}
		got := &celeryv1alpha1.CeleryCluster{}
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(cc), got); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(got.Status.Conditions, celery.ConditionBrokerReachable) {
			return fmt.Errorf("BrokerReachable not True: %v", got.Status.Conditions)
		}
		return nil
	})
}

// waitAppReady waits until the App is Ready.
func waitAppReady(t *testing.T, a *appsv1alpha1.App) {
	t.Helper()
	testkit.Eventually(t, wait, func() error {
		got := &appsv1alpha1.App{}
		if err := testkit.Env(t).Client.Get(t.Context(), client.ObjectKeyFromObject(a), got); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(got.Status.Conditions, "Ready") {
			return fmt.Errorf("App not Ready: %v", got.Status.Conditions)
		}
		return nil
	})
}

func startRedis(t *testing.T) *brokers.Redis {
	t.Helper()
	r, err := brokers.StartRedis(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

func runtimeConvert(u *unstructured.Unstructured, into any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into)
}
