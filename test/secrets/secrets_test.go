package secrets

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	celeryv1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	crdmanifests "github.com/setpoint-dev/setpoint/config/crd"
	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operator/configdata"
	"github.com/setpoint-dev/setpoint/operator/crd"
	"github.com/setpoint-dev/setpoint/operators/app"
	"github.com/setpoint-dev/setpoint/operators/celery"
	"github.com/setpoint-dev/setpoint/operators/reloader"
	"github.com/setpoint-dev/setpoint/testkit"
)

const wait = 60 * time.Second

// The canaries: values of every shape a Secret holds. None of them, nor
// any part marked CANARY, may appear outside the Secrets themselves.
var canaries = []string{"CANARY1pw", "CANARY2tok", "CANARY3usr", "CANARY4pw", "CANARY5usr", "CANARY6pw", "CANARY7json", "CANARY8nl", "CANARY9q"}

// syncBuffer is a log sink the operators write to from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSecretsStaySecret drives every operator down every path that reads
// a Secret, with canary values, and then looks for the canaries in
// admission answers, statuses, Events, every object in the namespace,
// the operators' logs at the highest verbosity, their metrics and the
// API server's audit log.
func TestSecretsStaySecret(t *testing.T) {
	env := testkit.Env(t)
	if err := crd.Install(t.Context(), env.Config, time.Minute,
		crdmanifests.MustGet(appsv1alpha1.GroupVersion.Group, "apps"),
		crdmanifests.MustGet(celeryv1alpha1.GroupVersion.Group, "celeryclusters")); err != nil {
		t.Fatal(err)
	}
	ns := env.Namespace(t)
	logs := &syncBuffer{}
	metricsAddr := startOperators(t, ns, logs)

	dead := func() int { return controlplane.FreePort() }
	testkit.Create(t,
		secret(ns, "unreachable-redis", "url", fmt.Sprintf("redis://:CANARY1pw@127.0.0.1:%d/0", dead())),
		secret(ns, "unreachable-amqp", "url", fmt.Sprintf("amqp://CANARY5usr:CANARY6pw@127.0.0.1:%d/", dead())),
		secret(ns, "query-password", "url", fmt.Sprintf("redis://127.0.0.1:%d/0?password=CANARY9q", dead())),
		secret(ns, "flower-auth", "auth", "CANARY3usr:CANARY4pw"),
		secret(ns, "json", "config", `{"token":"CANARY7json"}`),
		secret(ns, "multiline", "cert", "-----BEGIN-----\nCANARY8nl\n-----END-----\n"),
	)
	var answers []string
	refused := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s was admitted", what)
			return
		}
		answers = append(answers, err.Error())
	}

	// Admission: a bare token where a URL should be, by dry run and for
	// real, and an App pointing at a missing key.
	testkit.Create(t, secret(ns, "typo", "url", "CANARY2tok"))
	waitWebhook(t, ns)
	bad := cluster(ns, "typo", "typo", nil)
	refused("a broker URL without a scheme (dry run)", env.Client.Create(t.Context(), bad.DeepCopy(), client.DryRunAll))
	refused("a broker URL without a scheme", env.Client.Create(t.Context(), bad.DeepCopy()))
	refused("an App reading a missing key", env.Client.Create(t.Context(), appReading(ns, "missing-key", "json", "nope")))
	refused("a password as a query option the Redis client does not know", env.Client.Create(t.Context(), cluster(ns, "query", "query-password", nil)))

	// Accepted objects that read the canaries: statuses, Events and logs
	// of unreachable brokers, a Secret that turns bad after admission,
	// an App and a reloaded Deployment.
	testkit.Create(t,
		cluster(ns, "redis-down", "unreachable-redis", &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "flower-auth"}, Key: "auth"}),
		cluster(ns, "amqp-down", "unreachable-amqp", nil),
		cluster(ns, "later", "later", nil), // admitted with a warning: the Secret is made below
		cluster(ns, "query-later", "query-later", nil),
		appReading(ns, "reader", "json", "config"),
		reloaded(ns, "reloaded"),
	)
	testkit.Create(t, secret(ns, "later", "url", "CANARY2tok"),
		secret(ns, "query-later", "url", fmt.Sprintf("redis://127.0.0.1:%d/0?password=CANARY9q", dead())))
	for _, name := range []string{"redis-down", "amqp-down", "later", "query-later"} {
		waitBrokerFalse(t, ns, name)
	}
	update(t, ns, "multiline", func(s *corev1.Secret) { s.Data["cert"] = []byte("-----BEGIN-----\nCANARY8nl second\n-----END-----\n") })
	waitRolled(t, ns, "reloaded")

	// A user who may create Apps but not read Secrets is not told the
	// keys of one.
	answers = append(answers, unprivilegedRefusal(t, ns))

	// Unkeyed digests of the canaries' Secrets would let a reader of the
	// workloads test guesses offline: only keyed ones may be there.
	needles := append([]string(nil), canaries...)
	for _, name := range []string{"multiline", "json", "flower-auth"} {
		s := &corev1.Secret{}
		if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
			t.Fatal(err)
		}
		plain := configdata.Key(nil)
		// Over the values, and over their digests (what caches hold).
		for _, data := range []map[string][]byte{s.Data, plain.Values(s.Data)} {
			needles = append(needles, plain.Digest(data, nil))
			for k := range s.Data {
				needles = append(needles, plain.Digest(data, []string{k}))
			}
		}
		for _, v := range s.Data {
			needles = append(needles, string(plain.Value(v)))
		}
	}
	places := map[string]string{
		"admission answers": strings.Join(answers, "\n"),
		"objects":           dumpNamespace(t, ns),
		"logs":              logs.String(),
		"metrics":           scrape(t, metricsAddr),
		"audit log":         readAudit(t),
	}
	for place, text := range places {
		for _, c := range needles {
			if i := strings.Index(text, c); i >= 0 {
				t.Errorf("%q in %s: ...%s...", c, place, text[max(0, i-200):min(len(text), i+100)])
			}
		}
	}
	if !strings.Contains(places["logs"], "redis-down") || len(places["audit log"]) == 0 {
		t.Errorf("nothing was looked at: %d bytes of logs, %d of audit log", len(places["logs"]), len(places["audit log"]))
	}
}

// startOperators runs the three operators as `setpoint run` does, with
// webhooks, logging everything at the highest verbosity into logs, and
// returns the address of their metrics.
func startOperators(t *testing.T, ns string, logs *syncBuffer) string {
	t.Helper()
	log := logr.FromSlogHandler(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.Level(-127)}))
	// controller-runtime's and client-go's own log lines too, as
	// `setpoint run` routes them.
	ctrl.SetLogger(operator.CappedLogger(log))
	klog.SetLogger(operator.CappedLogger(log))
	metricsAddr := testkit.FreeAddr(t)
	op, err := operator.New(testkit.Env(t).Config, operator.Options{
		Name: "secrets-" + ns, Scheme: scheme, Namespaces: []string{ns}, Logger: &log,
		MetricsAddr: metricsAddr, ProbeAddr: "0", SyncPeriod: time.Second, Webhooks: testkit.Webhooks(t),
		DigestKeySecret:     types.NamespacedName{Namespace: ns, Name: "digest-key"},
		ConcealConfigValues: true, // as setpoint run
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Setup(op); err != nil {
		t.Fatal(err)
	}
	if err := celery.Setup(op, celery.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := reloader.Setup(op, reloader.Options{Quiet: -1}); err != nil {
		t.Fatal(err)
	}
	testkit.StartOperator(t, op)
	return metricsAddr
}

func secret(ns, name, key, value string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{key: []byte(value)}}
}

func cluster(ns, name, brokerSecret string, flowerAuth *corev1.SecretKeySelector) *celeryv1alpha1.CeleryCluster {
	cc := &celeryv1alpha1.CeleryCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: celeryv1alpha1.CeleryClusterSpec{
			Image: "example/celery:1", App: "proj",
			Broker: celeryv1alpha1.Broker{URLSecretRef: corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: brokerSecret}, Key: "url"}},
			Pools: []celeryv1alpha1.Pool{{Name: "default", Queues: []string{"celery"}, MaxReplicas: 2}},
		},
	}
	if flowerAuth != nil {
		cc.Spec.Flower = &celeryv1alpha1.Flower{BasicAuthSecretRef: flowerAuth}
	}
	return cc
}

func appReading(ns, name, secretName, key string) *appsv1alpha1.App {
	ref := func() *corev1.SecretKeySelector {
		return &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secretName}, Key: key}
	}
	return &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1alpha1.AppSpec{
			Image:   "example/app:1",
			Env:     []corev1.EnvVar{{Name: "CONFIG", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: ref()}}},
			EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "multiline"}}}},
			Files:   []appsv1alpha1.File{{Path: "/etc/app/cert", Secret: &appsv1alpha1.KeyRef{Name: "multiline", Key: "cert"}}},
			Processes: []appsv1alpha1.Process{{Name: "web", Probes: &appsv1alpha1.Probes{Readiness: &appsv1alpha1.Probe{
				Exec: &appsv1alpha1.ExecProbe{Command: []string{"check"}}}}}},
		},
	}
}

// reloaded is a Deployment the reloader rolls when Secret multiline
// changes.
func reloaded(ns, name string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{reloader.AnnotationAuto: "true"}},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example/c:1",
					EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "multiline"}}}}}}},
			},
		},
	}
}

// waitWebhook waits until the CeleryCluster webhook refuses a cluster
// whose Secret has no key url.
func waitWebhook(t *testing.T, ns string) {
	t.Helper()
	testkit.Create(t, secret(ns, "empty", "other", "x"))
	testkit.Eventually(t, wait, func() error {
		if err := testkit.Env(t).Client.Create(t.Context(), cluster(ns, "probe", "empty", nil), client.DryRunAll); err == nil {
			return fmt.Errorf("the webhook does not answer yet")
		}
		return nil
	})
}

func waitBrokerFalse(t *testing.T, ns, name string) {
	t.Helper()
	testkit.Eventually(t, wait, func() error {
		cc := &celeryv1alpha1.CeleryCluster{}
		if err := testkit.Env(t).Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, cc); err != nil {
			return err
		}
		c := meta.FindStatusCondition(cc.Status.Conditions, celery.ConditionBrokerReachable)
		if c == nil || c.Status != metav1.ConditionFalse || c.Message == "" {
			return fmt.Errorf("%s: BrokerReachable %+v", name, c)
		}
		return nil
	})
}

func update(t *testing.T, ns, name string, change func(*corev1.Secret)) {
	t.Helper()
	c := testkit.Env(t).Client
	testkit.Eventually(t, wait, func() error {
		s := &corev1.Secret{}
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
			return err
		}
		change(s)
		return c.Update(t.Context(), s)
	})
}

func waitRolled(t *testing.T, ns, name string) {
	t.Helper()
	testkit.Eventually(t, wait, func() error {
		d := &appsv1.Deployment{}
		if err := testkit.Env(t).Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
			return err
		}
		if d.Generation < 2 {
			return fmt.Errorf("not rolled yet")
		}
		return nil
	})
}

// unprivilegedRefusal creates, as a user who may create Apps in ns but
// not read its Secrets, an App reading a missing key, and returns the
// refusal, which must not list the Secret's keys.
func unprivilegedRefusal(t *testing.T, ns string) string {
	t.Helper()
	testkit.Create(t,
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-author"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"apps.setpoint.dev"}, Resources: []string{"apps"}, Verbs: []string{"create"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-author"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "app-author"},
			Subjects: []rbacv1.Subject{{Kind: "User", Name: "author"}}},
	)
	cfg := rest.CopyConfig(testkit.Env(t).Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "author"}
	author, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	var msg string
	testkit.Eventually(t, wait, func() error {
		err := author.Create(t.Context(), appReading(ns, "author-app", "json", "tokn"), client.DryRunAll)
		if err == nil {
			return fmt.Errorf("admitted")
		}
		msg = err.Error()
		if !strings.Contains(msg, `Secret json has no key "tokn" (its keys are not listed: you may not read Secret json)`) {
			return fmt.Errorf("refusal %q", msg)
		}
		return nil
	})
	return msg
}

// dumpNamespace is every object of the kinds the operators write, in
// ns, as JSON: children, statuses, Events.
func dumpNamespace(t *testing.T, ns string) string {
	t.Helper()
	var out strings.Builder
	for _, gvk := range []schema.GroupVersionKind{
		appsv1alpha1.GroupVersion.WithKind("AppList"), celeryv1alpha1.GroupVersion.WithKind("CeleryClusterList"),
		{Group: "apps", Version: "v1", Kind: "DeploymentList"}, {Group: "apps", Version: "v1", Kind: "ReplicaSetList"},
		{Group: "apps", Version: "v1", Kind: "ControllerRevisionList"}, {Version: "v1", Kind: "PodList"},
		{Version: "v1", Kind: "ServiceList"}, {Version: "v1", Kind: "EventList"}, {Version: "v1", Kind: "ConfigMapList"},
		{Group: "networking.k8s.io", Version: "v1", Kind: "IngressList"},
		{Group: "autoscaling", Version: "v2", Kind: "HorizontalPodAutoscalerList"},
	} {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk)
		if err := testkit.Env(t).Client.List(t.Context(), list, client.InNamespace(ns)); err != nil {
			t.Fatalf("list %s: %v", gvk.Kind, err)
		}
		b, err := json.Marshal(list)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(b)
	}
	return out.String()
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	body, err := testkit.HTTPGet("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	return body
}

func readAudit(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(auditLog)
	if err != nil {
		t.Fatalf("read the audit log: %v", err)
	}
	return string(b)
}
