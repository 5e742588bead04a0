package celery

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator/configdata"
)

func sample(edit func(*v1alpha1.CeleryCluster)) *v1alpha1.CeleryCluster {
	cc := &v1alpha1.CeleryCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "tasks"},
		Spec: v1alpha1.CeleryClusterSpec{
			Image: "example/shop:1",
			App:   "shop.celery:app",
			Broker: v1alpha1.Broker{URLSecretRef: corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "broker"}, Key: "url"}},
			Env:   []corev1.EnvVar{{Name: "DJANGO_SETTINGS_MODULE", Value: "shop.settings"}},
			Pools: []v1alpha1.Pool{{Name: "default", Queues: []string{"celery", "mail"}, MaxReplicas: 5}},
		},
	}
	if edit != nil {
		edit(cc)
	}
	return cc
}

// brokerFromSecret fails unless the container gets the broker URL only
// through a reference to the spec's Secret key, never as text.
func brokerFromSecret(t *testing.T, c corev1.Container) {
	t.Helper()
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == BrokerURLEnv })
	if i < 0 || c.Env[i].Value != "" || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.SecretKeyRef == nil ||
		c.Env[i].ValueFrom.SecretKeyRef.Name != "broker" || c.Env[i].ValueFrom.SecretKeyRef.Key != "url" {
		t.Errorf("%s: broker URL not from the Secret: %+v", c.Name, c.Env)
	}
}

func TestWorkers(t *testing.T) {
	tests := []struct {
		name      string
		cc        *v1alpha1.CeleryCluster
		replicas  int32
		command   string
		grace     int64
		resources corev1.ResourceRequirements
	}{
		{"defaults", sample(nil), 3,
			"celery --app shop.celery:app worker --loglevel INFO --queues celery,mail --concurrency 1 --pool prefork --hostname default@%h", 300, corev1.ResourceRequirements{}},
		{"pool settings", sample(func(cc *v1alpha1.CeleryCluster) {
			p := &cc.Spec.Pools[0]
			p.Concurrency, p.Pool, p.TerminationGracePeriodSeconds = 8, "threads", new(int64(3600))
			p.Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}}
		}), 0,
			"celery --app shop.celery:app worker --loglevel INFO --queues celery,mail --concurrency 8 --pool threads --hostname default@%h", 3600,
			corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Workers(tt.cc, tt.cc.Spec.Pools[0], tt.replicas)
			if d.Name != "tasks-default" || d.Namespace != "shop" || *d.Spec.Replicas != tt.replicas {
				t.Errorf("deployment %s/%s replicas %d", d.Namespace, d.Name, *d.Spec.Replicas)
			}
			if sel := d.Spec.Selector.MatchLabels; sel[LabelCluster] != "tasks" || sel[LabelComponent] != "default" || len(sel) != 2 {
				t.Errorf("selector %v", sel)
			}
			for k, v := range d.Spec.Selector.MatchLabels {
				if d.Spec.Template.Labels[k] != v {
					t.Errorf("pod labels %v do not match the selector", d.Spec.Template.Labels)
				}
			}
			c := d.Spec.Template.Spec.Containers[0]
			if got := strings.Join(c.Command, " "); got != tt.command {
				t.Errorf("command\n  %s\nwant\n  %s", got, tt.command)
			}
			if *d.Spec.Template.Spec.TerminationGracePeriodSeconds != tt.grace {
				t.Errorf("grace %d, want %d", *d.Spec.Template.Spec.TerminationGracePeriodSeconds, tt.grace)
			}
			if !c.Resources.Requests.Cpu().Equal(*tt.resources.Requests.Cpu()) {
				t.Errorf("resources %v", c.Resources)
			}
			brokerFromSecret(t, c)
			if c.Env[1].Name != "DJANGO_SETTINGS_MODULE" {
				t.Errorf("user env not kept after the broker URL: %v", c.Env)
			}
		})
	}
}

func TestBeat(t *testing.T) {
	if Beat(sample(nil)) != nil {
		t.Error("beat built without spec.beat")
	}
	d := Beat(sample(func(cc *v1alpha1.CeleryCluster) { cc.Spec.Beat = &v1alpha1.Beat{} }))
	if d.Name != "tasks-beat" || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("beat %s replicas %d strategy %s: want one pod, Recreate", d.Name, *d.Spec.Replicas, d.Spec.Strategy.Type)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if got := strings.Join(c.Command, " "); got != "celery --app shop.celery:app beat --loglevel INFO --schedule /tmp/celerybeat-schedule" {
		t.Errorf("command %s", got)
	}
	brokerFromSecret(t, c)
}

func TestFlower(t *testing.T) {
	if d, s := Flower(sample(nil)); d != nil || s != nil {
		t.Error("Flower built without spec.flower")
	}
	tests := []struct {
		name    string
		flower  v1alpha1.Flower
		image   string
		port    int32
		auth    bool
		command []string
	}{
		{"defaults", v1alpha1.Flower{}, "example/shop:1", 5555, false, []string{"celery", "--app", "shop.celery:app", "flower", "--port=5555"}},
		{"own image and command, port and basic auth", v1alpha1.Flower{Image: "mher/flower:2.0", Command: []string{"celery", "flower"}, Port: 8080,
			BasicAuthSecretRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "flower"}, Key: "auth"}},
			"mher/flower:2.0", 8080, true, []string{"celery", "flower", "--port=8080"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, svc := Flower(sample(func(cc *v1alpha1.CeleryCluster) { cc.Spec.Flower = &tt.flower }))
			c := d.Spec.Template.Spec.Containers[0]
			if d.Name != "tasks-flower" || c.Image != tt.image || c.Ports[0].ContainerPort != tt.port {
				t.Errorf("flower %s image %s port %d", d.Name, c.Image, c.Ports[0].ContainerPort)
			}
			if p := svc.Spec.Ports[0]; svc.Name != "tasks-flower" || p.Port != tt.port || p.TargetPort.StrVal != FlowerPortName {
				t.Errorf("service %s ports %+v", svc.Name, svc.Spec.Ports)
			}
			if svc.Spec.Selector[LabelComponent] != ComponentFlower || d.Spec.Template.Labels[LabelComponent] != ComponentFlower {
				t.Errorf("service selector %v does not select Flower's pods", svc.Spec.Selector)
			}
			i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "FLOWER_BASIC_AUTH" })
			if (i >= 0) != tt.auth || (tt.auth && (c.Env[i].Value != "" || c.Env[i].ValueFrom.SecretKeyRef.Name != "flower")) {
				t.Errorf("basic auth env %v, want from the Secret: %v", c.Env, tt.auth)
			}
			if !slices.Equal(c.Command, tt.command) {
				t.Errorf("command %q, want %q", c.Command, tt.command)
			}
			brokerFromSecret(t, c)
		})
	}
}

func TestUses(t *testing.T) {
	withAuth := sample(func(cc *v1alpha1.CeleryCluster) {
		cc.Spec.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}}
		cc.Spec.Flower = &v1alpha1.Flower{BasicAuthSecretRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "flower"}, Key: "auth"}}
	})
	tests := []struct {
		name string
		uses []configdata.Use
		want map[string][]string
	}{
		{"workers read the broker key", Uses(sample(nil)), map[string][]string{"Secret/broker": {"url"}}},
		{"and envFrom whole", Uses(withAuth), map[string][]string{"Secret/broker": {"url"}, "ConfigMap/settings": nil}},
		{"Flower also its auth", FlowerUses(withAuth), map[string][]string{"Secret/broker": {"url"}, "ConfigMap/settings": nil, "Secret/flower": {"auth"}}},
	}
	for _, tt := range tests {
		if got := configdata.UsedKeys(tt.uses); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestWithConfigHash(t *testing.T) {
	cc := sample(nil)
	d := WithConfigHash(Workers(cc, cc.Spec.Pools[0], 1), "abc")
	if got := d.Spec.Template.Annotations[AnnotationConfigHash]; got != "abc" {
		t.Errorf("template annotation %q, want abc", got)
	}
	if d := WithConfigHash(Workers(cc, cc.Spec.Pools[0], 1), ""); d.Spec.Template.Annotations != nil {
		t.Errorf("an empty hash added annotations: %v", d.Spec.Template.Annotations)
	}
}

// TestConfigFromIsByValue: the autoscaler reads the configuration again
// when this name changes; copies of one spec (each poll reads a new copy)
// must not change it, or every poll would GET every Secret.
func TestConfigFromIsByValue(t *testing.T) {
	yes := true
	cc := sample(func(cc *v1alpha1.CeleryCluster) {
		cc.Spec.Env = append(cc.Spec.Env, corev1.EnvVar{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "api"}, Key: "token", Optional: &yes}}})
	})
	if a, b := configFrom(cc), configFrom(cc.DeepCopy()); a != b {
		t.Errorf("two copies of one spec: %q and %q", a, b)
	}
	other := cc.DeepCopy()
	other.Spec.Env[1].ValueFrom.SecretKeyRef.Key = "other"
	if configFrom(cc) == configFrom(other) {
		t.Error("another key read gives the same name")
	}
}
