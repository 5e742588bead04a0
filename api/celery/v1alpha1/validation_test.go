package v1alpha1_test

import (
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	crdmanifests "github.com/setpoint-dev/setpoint/config/crd"
	"github.com/setpoint-dev/setpoint/operator/crd"
	"github.com/setpoint-dev/setpoint/testkit"
)

var scheme = testkit.NewScheme(v1alpha1.AddToScheme)

// The CRD's validation runs in a real kube-apiserver: CEL rules are the
// API server's, not ours.
func TestMain(m *testing.M) {
	os.Exit(testkit.Run(m, testkit.WithScheme(scheme)))
}

func cluster(ns, name string) *v1alpha1.CeleryCluster {
	return &v1alpha1.CeleryCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.CeleryClusterSpec{
			Image: "example/tasks:1",
			App:   "proj.celery:app",
			Broker: v1alpha1.Broker{URLSecretRef: corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "broker"}, Key: "url"}},
			Pools: []v1alpha1.Pool{{Name: "default", Queues: []string{"celery"}, MaxReplicas: 5}},
		},
	}
}

func TestBadCeleryClustersAreRefused(t *testing.T) {
	env := testkit.Env(t)
	if err := crd.Install(t.Context(), env.Config, time.Minute, crdmanifests.MustGet(v1alpha1.GroupVersion.Group, "celeryclusters")); err != nil {
		t.Fatal(err)
	}
	ns := env.Namespace(t)
	tests := []struct {
		name   string
		cc     string
		change func(*v1alpha1.CeleryCluster)
		want   string
	}{
		{"empty image", "c", func(c *v1alpha1.CeleryCluster) { c.Spec.Image = "" }, "spec.image"},
		{"app that is not a module", "c", func(c *v1alpha1.CeleryCluster) { c.Spec.App = "proj celery" }, "app must be a Python module path"},
		{"no pools", "c", func(c *v1alpha1.CeleryCluster) { c.Spec.Pools = nil }, "spec.pools"},
		{"min above max", "c", func(c *v1alpha1.CeleryCluster) { c.Spec.Pools[0].MinReplicas = new(int32(6)) }, "minReplicas must not be above maxReplicas"},
		{"zero minimum without scale to zero", "c", func(c *v1alpha1.CeleryCluster) { c.Spec.Pools[0].MinReplicas = new(int32(0)) }, "minReplicas 0 needs scaleToZero: true"},
		{"no queues", "c", func(c *v1alpha1.CeleryCluster) { c.Spec.Pools[0].Queues = nil }, "spec.pools[0].queues"},
		{"a queue in two pools", "c", func(c *v1alpha1.CeleryCluster) {
			c.Spec.Pools = append(c.Spec.Pools, v1alpha1.Pool{Name: "other", Queues: []string{"celery", "mail"}, MaxReplicas: 2})
		}, "each queue may be consumed by only one pool"},
		{"duplicate pool", "c", func(c *v1alpha1.CeleryCluster) { c.Spec.Pools = append(c.Spec.Pools, c.Spec.Pools[0]) }, "Duplicate value"},
		{"pool named beat", "c", func(c *v1alpha1.CeleryCluster) { c.Spec.Pools[0].Name = "beat" }, "a pool may not be named beat or flower"},
		{"unknown pool type", "c", func(c *v1alpha1.CeleryCluster) { c.Spec.Pools[0].Pool = "fork" }, "spec.pools[0].pool: Unsupported value"},
		{"zero target", "c", func(c *v1alpha1.CeleryCluster) { c.Spec.Pools[0].TargetBacklog = -1 }, "spec.pools[0].targetBacklog"},
		{"window too long", "c", func(c *v1alpha1.CeleryCluster) {
			c.Spec.Pools[0].ScaleDownWindow = &metav1.Duration{Duration: 2 * time.Hour}
		}, "scaleDownWindow must be between 0s and 1h"},
		{"poll too often", "c", func(c *v1alpha1.CeleryCluster) {
			c.Spec.PollInterval = &metav1.Duration{Duration: time.Millisecond}
		}, "pollInterval must be between 200ms and 5m"},
		{"flower port out of range", "c", func(c *v1alpha1.CeleryCluster) { c.Spec.Flower = &v1alpha1.Flower{Port: 70000} }, "spec.flower.port"},
		{"queue names in one item", "c", func(c *v1alpha1.CeleryCluster) { c.Spec.Pools[0].Queues = []string{"mail,sms"} },
			"a queue name may not contain commas or spaces"},
		{"queue name with a space", "c", func(c *v1alpha1.CeleryCluster) { c.Spec.Pools[0].Queues = []string{"mail sms"} },
			"a queue name may not contain commas or spaces"},
		{"scale to zero with the default minimum", "c", func(c *v1alpha1.CeleryCluster) { c.Spec.Pools[0].ScaleToZero = true },
			"scaleToZero needs minReplicas: 0"},
		{"no grace for running tasks", "c", func(c *v1alpha1.CeleryCluster) { c.Spec.Pools[0].TerminationGracePeriodSeconds = new(int64(0)) },
			"spec.pools[0].terminationGracePeriodSeconds: Invalid value: 0"},
		{"the broker URL in env", "c", func(c *v1alpha1.CeleryCluster) {
			c.Spec.Env = []corev1.EnvVar{{Name: "CELERY_BROKER_URL", Value: "redis://other"}}
		}, "CELERY_BROKER_URL and FLOWER_BASIC_AUTH are set by the operator"},
		{"a Flower image without its command", "c", func(c *v1alpha1.CeleryCluster) { c.Spec.Flower = &v1alpha1.Flower{Image: "mher/flower:2.0"} },
			"a Flower image of its own needs its command"},
		{"name too long", strings.Repeat("c", 41), nil, "at most 40 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cluster(ns, tt.cc)
			if tt.change != nil {
				tt.change(c)
			}
			err := env.Client.Create(t.Context(), c)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
	// The same cluster, fixed, is accepted, with its defaults.
	ok := cluster(ns, "fine")
	if err := env.Client.Create(t.Context(), ok); err != nil {
		t.Fatal(err)
	}
	p := ok.Spec.Pools[0]
	if *p.MinReplicas != 1 || p.Concurrency != 1 || p.Pool != "prefork" || p.TargetBacklog != 10 ||
		p.ScaleDownWindow.Duration != 2*time.Minute || *p.TerminationGracePeriodSeconds != 300 || ok.Spec.PollInterval.Duration != time.Second {
		t.Errorf("defaults %+v, poll %v", p, ok.Spec.PollInterval)
	}
	// Scale to zero is allowed when asked for.
	zero := cluster(ns, "sleepy")
	zero.Spec.Pools[0].MinReplicas, zero.Spec.Pools[0].ScaleToZero = new(int32(0)), true
	if err := env.Client.Create(t.Context(), zero); err != nil {
		t.Fatal(err)
	}
}
