package e2e

import (
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	celeryv1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operators/app"
	"github.com/setpoint-dev/setpoint/operators/celery"
	"github.com/setpoint-dev/setpoint/testkit"
)

// The App and CeleryCluster admission webhooks, served as `setpoint dev`
// serves them, refuse references CEL cannot check with a message that
// says what to fix, warn about Secrets that do not exist yet, and admit
// good objects.
func TestAdmissionWebhooks(t *testing.T) {
	installCRDs(t)
	ns := testkit.Env(t).Namespace(t)
	op := newOperatorWith(t, ns, nil, func(o *operator.Options) {
		// The webhook configurations are named after the operator: one per
		// test, so parallel runs do not share them.
		o.Name = "admission-" + ns
		o.Webhooks = testkit.Webhooks(t)
	})
	if err := app.Setup(op); err != nil {
		t.Fatal(err)
	}
	if err := celery.Setup(op, celery.Options{}); err != nil {
		t.Fatal(err)
	}
	testkit.StartOperator(t, op)
	testkit.Create(t,
		secret(ns, "db", map[string]string{"user": "app", "password": "s3cret"}),
		secret(ns, "not-tls", map[string]string{"cert": "x"}),
		secret(ns, "redis", map[string]string{"url": "redis://:hunter2@redis:6379/0"}),
		secret(ns, "memcached", map[string]string{"url": "memcached://:hunter2@cache:11211"}),
	)
	c, warned := testkit.WarnedClient(t)

	newApp := func(name string, change func(*appsv1alpha1.App)) *appsv1alpha1.App {
		a := &appsv1alpha1.App{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       appsv1alpha1.AppSpec{Image: "example/app:1", Processes: []appsv1alpha1.Process{{Name: "web"}}},
		}
		change(a)
		return a
	}
	envFrom := func(secretName, key string) func(*appsv1alpha1.App) {
		return func(a *appsv1alpha1.App) {
			a.Spec.Env = []corev1.EnvVar{{Name: "DB_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: secretName}, Key: key}}}}
		}
	}
	cluster := func(name, secretName, key string) *celeryv1alpha1.CeleryCluster {
		return &celeryv1alpha1.CeleryCluster{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: celeryv1alpha1.CeleryClusterSpec{
				Image: "example/tasks:1", App: "tasks",
				Broker: celeryv1alpha1.Broker{URLSecretRef: corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: secretName}, Key: key}},
				Pools: []celeryv1alpha1.Pool{{Name: "default", Queues: []string{"work"}, MaxReplicas: 2, TargetBacklog: 2}},
			},
		}
	}
	refused := []struct {
		name string
		obj  client.Object
		want string
	}{
		{"App: key not in the Secret", newApp("typo", envFrom("db", "pasword")),
			`admission webhook "apps.apps.setpoint.dev" denied the request: spec.env[DB_PASSWORD]: Secret db has no key "pasword" (it has: password, user)`},
		{"App: TLS Secret without a certificate", newApp("tls", func(a *appsv1alpha1.App) {
			a.Spec.Routes = []appsv1alpha1.Route{{Host: "shop.example.com", TLSSecretName: "not-tls"}}
		}), "spec.routes[0]: Secret not-tls cannot serve TLS for shop.example.com: it needs the keys tls.crt and tls.key (it has: cert)"},
		{"CeleryCluster: key not in the Secret", cluster("typo", "redis", "URL"),
			`spec.broker.urlSecretRef: Secret redis has no key "URL" (it has: url)`},
		{"CeleryCluster: broker the autoscaler cannot read", cluster("memcached", "memcached", "url"),
			`spec.broker.urlSecretRef: key "url" of Secret memcached: broker URL has a scheme the autoscaler cannot read`},
	}
	// The webhooks are registered once the server listens. Until then a
	// dry run is accepted: that must keep the wait going (it returned nil
	// and ended the wait, so every run after a process's first, with the
	// plane warm, raced past the registration and saw no admission).
	testkit.Eventually(t, wait, func() error {
		err := c.Create(t.Context(), refused[0].obj.DeepCopyObject().(client.Object), client.DryRunAll)
		switch {
		case err == nil:
			return errors.New("accepted: webhooks not registered yet")
		case !strings.Contains(err.Error(), refused[0].want):
			return err
		}
		return nil
	})
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Create(t.Context(), tc.obj)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the message shows the broker password: %v", err)
			}
		})
	}

	warned.Take()
	accepted := []struct {
		name string
		obj  client.Object
		warn string
	}{
		{"App with its Secret", newApp("good", envFrom("db", "password")), ""},
		{"App before its Secret", newApp("early", envFrom("later", "password")), "Secret later does not exist yet: the App will not be Ready until it does"},
		{"CeleryCluster with its Secret", cluster("good", "redis", "url"), ""},
		{"CeleryCluster before its Secret", cluster("early", "later", "url"), "spec.broker.urlSecretRef: Secret later does not exist yet"},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.Create(t.Context(), tc.obj); err != nil {
				t.Fatalf("refused: %v", err)
			}
			got := warned.Take()
			if tc.warn == "" && len(got) > 0 {
				t.Errorf("warnings %q, want none", got)
			}
			if tc.warn != "" && !slices.ContainsFunc(got, func(w string) bool { return strings.Contains(w, tc.warn) }) {
				t.Errorf("warnings %q, want one saying %q", got, tc.warn)
			}
		})
	}

	// Changing a good App to a bad reference is refused too.
	a := &appsv1alpha1.App{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "good"}, a); err != nil {
		t.Fatal(err)
	}
	// A patch, not an update: the operator writes the App's status at
	// any moment, and an update carrying the resourceVersion just read
	// can lose that race with a conflict before admission is asked.
	before := a.DeepCopy()
	envFrom("db", "passwd")(a)
	if err := c.Patch(t.Context(), a, client.MergeFrom(before)); err == nil || !strings.Contains(err.Error(), `Secret db has no key "passwd"`) {
		t.Errorf("update to a missing key: %v, want refused", err)
	}
}
