package app

import (
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
)

// newApp is a fixture with functional options, after cert-manager's gen.
func newApp(opts ...func(*v1alpha1.App)) *v1alpha1.App {
	a := &v1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "prod", Generation: 3},
		Spec: v1alpha1.AppSpec{
			Image:     "example/shop:1",
			Port:      8080,
			Processes: []v1alpha1.Process{{Name: "web"}},
		},
	}
	for _, o := range opts {
		o(a)
	}
	return a
}

func withProcess(p v1alpha1.Process) func(*v1alpha1.App) {
	return func(a *v1alpha1.App) { a.Spec.Processes = append(a.Spec.Processes, p) }
}

func withRoutes(r ...v1alpha1.Route) func(*v1alpha1.App) {
	return func(a *v1alpha1.App) { a.Spec.Routes = r }
}

func cpu(s string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(s)}}
}

func TestDeployment(t *testing.T) {
	tests := []struct {
		name    string
		app     *v1alpha1.App
		process int
		hash    string
		check   func(t *testing.T, d *appsv1.Deployment)
	}{{
		name: "web gets its port, $PORT and one replica by default",
		app:  newApp(),
		check: func(t *testing.T, d *appsv1.Deployment) {
			c := d.Spec.Template.Spec.Containers[0]
			eq(t, "name", d.Name, "shop-web")
			eq(t, "replicas", *d.Spec.Replicas, int32(1))
			eq(t, "ports", c.Ports, []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}})
			eq(t, "env", c.Env, []corev1.EnvVar{{Name: "PORT", Value: "8080"}})
			eq(t, "selector", d.Spec.Selector.MatchLabels, map[string]string{LabelApp: "shop", LabelProcess: "web"})
			eq(t, "template annotations", d.Spec.Template.Annotations, map[string]string(nil))
			if c.ReadinessProbe != nil || c.LivenessProbe != nil {
				t.Error("probes without a health-check path")
			}
		},
	}, {
		name:    "a worker has no port, no $PORT and keeps its command",
		app:     newApp(withProcess(v1alpha1.Process{Name: "worker", Command: []string{"celery"}, Args: []string{"worker"}, Replicas: new(int32(3))})),
		process: 1,
		check: func(t *testing.T, d *appsv1.Deployment) {
			c := d.Spec.Template.Spec.Containers[0]
			eq(t, "name", d.Name, "shop-worker")
			eq(t, "replicas", *d.Spec.Replicas, int32(3))
			eq(t, "ports", len(c.Ports), 0)
			eq(t, "env", len(c.Env), 0)
			eq(t, "command", c.Command, []string{"celery"})
			eq(t, "args", c.Args, []string{"worker"})
		},
	}, {
		name: "autoscaling leaves replicas to the HPA",
		app: newApp(func(a *v1alpha1.App) {
			a.Spec.Processes[0].Autoscaling = &v1alpha1.Autoscaling{MinReplicas: 2, MaxReplicas: 5}
		}),
		check: func(t *testing.T, d *appsv1.Deployment) {
			if d.Spec.Replicas != nil {
				t.Errorf("replicas = %d, want unset", *d.Spec.Replicas)
			}
			eq(t, "hand-off", d.Annotations["setpoint.dev/hand-off"], "spec.replicas")
		},
	}, {
		name: "the config hash goes into the pod template",
		app:  newApp(),
		hash: "abc",
		check: func(t *testing.T, d *appsv1.Deployment) {
			eq(t, "hash", d.Spec.Template.Annotations[AnnotationConfigHash], "abc")
		},
	}, {
		name: "health check path gives HTTP probes on the named port",
		app:  newApp(func(a *v1alpha1.App) { a.Spec.HealthCheckPath = "/healthz" }),
		check: func(t *testing.T, d *appsv1.Deployment) {
			c := d.Spec.Template.Spec.Containers[0]
			eq(t, "readiness path", c.ReadinessProbe.HTTPGet.Path, "/healthz")
			eq(t, "readiness port", c.ReadinessProbe.HTTPGet.Port, intstr.FromString("http"))
			eq(t, "liveness path", c.LivenessProbe.HTTPGet.Path, "/healthz")
			if c.LivenessProbe.FailureThreshold <= c.ReadinessProbe.FailureThreshold {
				t.Error("liveness should tolerate more failures than readiness")
			}
		},
	}, {
		name: "metrics give scrape annotations and a metrics port",
		app:  newApp(func(a *v1alpha1.App) { a.Spec.Metrics = &v1alpha1.Metrics{Port: 9090, Path: "/m"} }),
		check: func(t *testing.T, d *appsv1.Deployment) {
			eq(t, "annotations", d.Spec.Template.Annotations, map[string]string{
				"prometheus.io/scrape": "true", "prometheus.io/port": "9090", "prometheus.io/path": "/m"})
			eq(t, "ports", len(d.Spec.Template.Spec.Containers[0].Ports), 2)
		},
	}, {
		name: "metrics on the web port add no second port and default the path",
		app:  newApp(func(a *v1alpha1.App) { a.Spec.Metrics = &v1alpha1.Metrics{} }),
		check: func(t *testing.T, d *appsv1.Deployment) {
			eq(t, "port", d.Spec.Template.Annotations["prometheus.io/port"], "8080")
			eq(t, "path", d.Spec.Template.Annotations["prometheus.io/path"], "/metrics")
			eq(t, "ports", len(d.Spec.Template.Spec.Containers[0].Ports), 1)
		},
	}, {
		name: "a user's PORT wins",
		app:  newApp(func(a *v1alpha1.App) { a.Spec.Env = []corev1.EnvVar{{Name: "PORT", Value: "1"}} }),
		check: func(t *testing.T, d *appsv1.Deployment) {
			eq(t, "env", d.Spec.Template.Spec.Containers[0].Env, []corev1.EnvVar{{Name: "PORT", Value: "1"}})
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, Deployment(tt.app, tt.app.Spec.Processes[tt.process], tt.hash))
		})
	}
}

func TestServiceAndIngress(t *testing.T) {
	tests := []struct {
		name        string
		app         *v1alpha1.App
		wantService bool
		wantIngress bool
		wantURLs    []string
		wantTLS     int
	}{
		{name: "web without routes", app: newApp(), wantService: true, wantURLs: []string{"http://shop.prod.svc"}},
		{name: "workers only", app: newApp(func(a *v1alpha1.App) { a.Spec.Processes = []v1alpha1.Process{{Name: "worker"}} })},
		{
			name:        "routes with TLS and paths",
			app:         newApp(withRoutes(v1alpha1.Route{Host: "shop.example.com", TLSSecretName: "tls"}, v1alpha1.Route{Host: "api.example.com", Paths: []string{"/v1", "/v2"}})),
			wantService: true, wantIngress: true, wantTLS: 1,
			wantURLs: []string{"https://shop.example.com/", "http://api.example.com/v1", "http://api.example.com/v2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc, ing := Service(tt.app), Ingress(tt.app)
			eq(t, "service", svc != nil, tt.wantService)
			eq(t, "ingress", ing != nil, tt.wantIngress)
			eq(t, "urls", URLs(tt.app), tt.wantURLs)
			if svc != nil {
				eq(t, "service ports", svc.Spec.Ports, []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}})
				eq(t, "service selector", svc.Spec.Selector, map[string]string{LabelApp: "shop", LabelProcess: "web"})
			}
			if ing != nil {
				eq(t, "rules", len(ing.Spec.Rules), len(tt.app.Spec.Routes))
				eq(t, "tls", len(ing.Spec.TLS), tt.wantTLS)
				for _, r := range ing.Spec.Rules {
					for _, p := range r.HTTP.Paths {
						eq(t, "backend", p.Backend.Service.Name, "shop")
					}
				}
			}
		})
	}
}

func TestAutoscalerAndBudget(t *testing.T) {
	tests := []struct {
		name       string
		process    v1alpha1.Process
		wantHPA    bool
		wantBudget bool
	}{
		{name: "one replica", process: v1alpha1.Process{Name: "web"}},
		{name: "fixed three", process: v1alpha1.Process{Name: "web", Replicas: new(int32(3))}, wantBudget: true},
		{name: "autoscaled 1..1", process: v1alpha1.Process{Name: "web", Autoscaling: &v1alpha1.Autoscaling{MinReplicas: 1, MaxReplicas: 1}, Resources: cpu("100m")}, wantHPA: true},
		{name: "autoscaled 2..10", process: v1alpha1.Process{Name: "web", Autoscaling: &v1alpha1.Autoscaling{MinReplicas: 2, MaxReplicas: 10, TargetCPUUtilizationPercentage: 60}, Resources: cpu("100m")}, wantHPA: true, wantBudget: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := newApp()
			hpa, pdb := HorizontalPodAutoscaler(app, tt.process), PodDisruptionBudget(app, tt.process)
			eq(t, "hpa", hpa != nil, tt.wantHPA)
			eq(t, "pdb", pdb != nil, tt.wantBudget)
			if hpa != nil {
				a := tt.process.Autoscaling
				eq(t, "target", hpa.Spec.ScaleTargetRef.Name, "shop-web")
				eq(t, "min", *hpa.Spec.MinReplicas, a.MinReplicas)
				eq(t, "max", hpa.Spec.MaxReplicas, a.MaxReplicas)
				want := a.TargetCPUUtilizationPercentage
				if want == 0 {
					want = 80
				}
				eq(t, "cpu target", *hpa.Spec.Metrics[0].Resource.Target.AverageUtilization, want)
			}
			if pdb != nil {
				eq(t, "max unavailable", *pdb.Spec.MaxUnavailable, intstr.FromInt32(1))
			}
		})
	}
}

func TestConfigRefsAndHash(t *testing.T) {
	app := newApp(func(a *v1alpha1.App) {
		a.Spec.Env = []corev1.EnvVar{
			{Name: "A", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "a"}}},
			{Name: "B", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "b", Optional: new(true)}}},
		}
		a.Spec.EnvFrom = []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}},
			{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Optional: new(true)}},
		}
	})
	refs := ConfigRefs(app)
	eq(t, "refs", refs, []ConfigRef{{Kind: KindConfigMap, Name: "cfg"}, {Kind: KindSecret, Name: "creds", Optional: true}})
	eq(t, "key", refs[0].Key("prod"), "ConfigMap/prod/cfg")

	base := []Config{{Ref: refs[0], Found: true, Data: map[string][]byte{"a": []byte("1")}}, {Ref: refs[1]}}
	tests := []struct {
		name    string
		configs []Config
		same    bool
	}{
		{name: "same content", configs: []Config{{Ref: refs[0], Found: true, Data: map[string][]byte{"a": []byte("1")}}, {Ref: refs[1]}}, same: true},
		{name: "value changed", configs: []Config{{Ref: refs[0], Found: true, Data: map[string][]byte{"a": []byte("2")}}, {Ref: refs[1]}}},
		{name: "key and value split differently", configs: []Config{{Ref: refs[0], Found: true, Data: map[string][]byte{"a1": nil}}, {Ref: refs[1]}}},
		{name: "optional secret appears", configs: []Config{base[0], {Ref: refs[1], Found: true, Data: map[string][]byte{}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eq(t, "same hash", ConfigHash(nil, tt.configs) == ConfigHash(nil, base), tt.same)
		})
	}
	eq(t, "no refs, no hash", ConfigHash(nil, nil), "")
	eq(t, "missing", Missing([]Config{{Ref: refs[0]}, {Ref: refs[1]}}), []string{"ConfigMap cfg"})
}

func eq[V any](t *testing.T, what string, got, want V) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}
