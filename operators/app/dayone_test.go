package app

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator"
)

// TestPodShape covers the pod-shaping fields of issue 20, one row each.
func TestPodShape(t *testing.T) {
	tolerations := []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	affinity := &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}}}}}}
	runAsUser := int64(1000)
	pod := func(s v1alpha1.PodSettings) func(*v1alpha1.App) { return func(a *v1alpha1.App) { a.Spec.Pod = &s } }
	tests := []struct {
		name    string
		app     *v1alpha1.App
		process int
		check   func(t *testing.T, d *appsv1.Deployment, c corev1.Container)
	}{{
		name: "image pull secrets",
		app:  newApp(func(a *v1alpha1.App) { a.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry"}} }),
		check: func(t *testing.T, d *appsv1.Deployment, _ corev1.Container) {
			eq(t, "pull secrets", d.Spec.Template.Spec.ImagePullSecrets, []corev1.LocalObjectReference{{Name: "registry"}})
		},
	}, {
		name: "placement and identity",
		app: newApp(pod(v1alpha1.PodSettings{NodeSelector: map[string]string{"disk": "ssd"}, Tolerations: tolerations, Affinity: affinity,
			ServiceAccountName: "shop", PriorityClassName: "high", SecurityContext: &corev1.PodSecurityContext{RunAsUser: &runAsUser},
			ContainerSecurityContext: &corev1.SecurityContext{ReadOnlyRootFilesystem: new(true)}})),
		check: func(t *testing.T, d *appsv1.Deployment, c corev1.Container) {
			s := d.Spec.Template.Spec
			eq(t, "node selector", s.NodeSelector, map[string]string{"disk": "ssd"})
			eq(t, "tolerations", s.Tolerations, tolerations)
			eq(t, "affinity", s.Affinity, affinity)
			eq(t, "service account", s.ServiceAccountName, "shop")
			eq(t, "priority class", s.PriorityClassName, "high")
			eq(t, "run as", *s.SecurityContext.RunAsUser, int64(1000))
			eq(t, "read-only root", *c.SecurityContext.ReadOnlyRootFilesystem, true)
		},
	}, {
		name: "pod labels and annotations never replace Setpoint's",
		app: newApp(pod(v1alpha1.PodSettings{
			Labels:      map[string]string{"team": "shop", "app.kubernetes.io/name": "other"},
			Annotations: map[string]string{"sidecar.istio.io/inject": "false"},
		})),
		check: func(t *testing.T, d *appsv1.Deployment, _ corev1.Container) {
			l := d.Spec.Template.Labels
			eq(t, "team", l["team"], "shop")
			eq(t, "name", l["app.kubernetes.io/name"], "shop")
			eq(t, "selector labels", l[LabelApp]+"/"+l[LabelProcess], "shop/web")
			eq(t, "annotations", d.Spec.Template.Annotations, map[string]string{"sidecar.istio.io/inject": "false"})
			eq(t, "deployment labels", d.Labels["team"], "")
		},
	}, {
		name: "one pod: no spread",
		app:  newApp(),
		check: func(t *testing.T, d *appsv1.Deployment, _ corev1.Container) {
			eq(t, "spread", len(d.Spec.Template.Spec.TopologySpreadConstraints), 0)
		},
	}, {
		name: "several pods spread over nodes by default",
		app:  newApp(func(a *v1alpha1.App) { a.Spec.Processes[0].Replicas = new(int32(3)) }),
		check: func(t *testing.T, d *appsv1.Deployment, _ corev1.Container) {
			eq(t, "spread", d.Spec.Template.Spec.TopologySpreadConstraints, []corev1.TopologySpreadConstraint{{
				MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.ScheduleAnyway,
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelApp: "shop", LabelProcess: "web"}},
			}})
		},
	}, {
		name: "a user spread replaces the default and selects the process's pods",
		app: newApp(pod(v1alpha1.PodSettings{TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
			MaxSkew: 2, TopologyKey: "topology.kubernetes.io/zone", WhenUnsatisfiable: corev1.DoNotSchedule}}}),
			func(a *v1alpha1.App) { a.Spec.Processes[0].Replicas = new(int32(3)) }),
		check: func(t *testing.T, d *appsv1.Deployment, _ corev1.Container) {
			got := d.Spec.Template.Spec.TopologySpreadConstraints
			eq(t, "count", len(got), 1)
			eq(t, "key", got[0].TopologyKey, "topology.kubernetes.io/zone")
			eq(t, "selector", got[0].LabelSelector.MatchLabels[LabelProcess], "web")
		},
	}, {
		name: "a process's image and env override the App's",
		app: newApp(func(a *v1alpha1.App) {
			a.Spec.Env = []corev1.EnvVar{{Name: "MODE", Value: "app"}, {Name: "KEEP", Value: "1"}}
			a.Spec.Processes = append(a.Spec.Processes, v1alpha1.Process{Name: "worker", Image: "example/worker:2",
				Env: []corev1.EnvVar{{Name: "MODE", Value: "worker"}}})
		}),
		process: 1,
		check: func(t *testing.T, _ *appsv1.Deployment, c corev1.Container) {
			eq(t, "image", c.Image, "example/worker:2")
			eq(t, "env", c.Env, []corev1.EnvVar{{Name: "KEEP", Value: "1"}, {Name: "MODE", Value: "worker"}})
		},
	}, {
		name: "a process's PORT replaces the injected one",
		app:  newApp(func(a *v1alpha1.App) { a.Spec.Processes[0].Env = []corev1.EnvVar{{Name: "PORT", Value: "9000"}} }),
		check: func(t *testing.T, _ *appsv1.Deployment, c corev1.Container) {
			eq(t, "env", c.Env, []corev1.EnvVar{{Name: "PORT", Value: "9000"}})
		},
	}, {
		name: "extra ports on the web container",
		app: newApp(func(a *v1alpha1.App) {
			a.Spec.Ports = []v1alpha1.Port{{Name: "grpc", Port: 9090}, {Name: "dns", Port: 5353, Protocol: corev1.ProtocolUDP}}
		}),
		check: func(t *testing.T, _ *appsv1.Deployment, c corev1.Container) {
			eq(t, "ports", c.Ports, []corev1.ContainerPort{
				{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
				{Name: "grpc", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
				{Name: "dns", ContainerPort: 5353, Protocol: corev1.ProtocolUDP},
			})
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Deployment(tt.app, tt.app.Spec.Processes[tt.process], "")
			tt.check(t, d, d.Spec.Template.Spec.Containers[0])
		})
	}
}

func TestFiles(t *testing.T) {
	mode := int32(0o400)
	a := newApp(func(a *v1alpha1.App) {
		a.Spec.Files = []v1alpha1.File{
			{Path: "/etc/shop/app.yaml", ConfigMap: &v1alpha1.KeyRef{Name: "shop.config", Key: "app.yaml"}},
			{Path: "/etc/shop/tls.key", Secret: &v1alpha1.KeyRef{Name: "certs", Key: "tls.key"}, Mode: &mode},
			{Path: "/etc/shop/log.yaml", ConfigMap: &v1alpha1.KeyRef{Name: "shop.config", Key: "log.yaml"}},
		}
	})
	d := Deployment(a, a.Spec.Processes[0], "")
	eq(t, "volumes", d.Spec.Template.Spec.Volumes, []corev1.Volume{
		{Name: "files-0", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "shop.config"},
			Items:                []corev1.KeyToPath{{Key: "app.yaml", Path: "app.yaml"}, {Key: "log.yaml", Path: "log.yaml"}}}}},
		{Name: "files-1", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: "certs", Items: []corev1.KeyToPath{{Key: "tls.key", Path: "tls.key", Mode: &mode}}}}},
	})
	eq(t, "mounts", d.Spec.Template.Spec.Containers[0].VolumeMounts, []corev1.VolumeMount{
		{Name: "files-0", MountPath: "/etc/shop/app.yaml", SubPath: "app.yaml", ReadOnly: true},
		{Name: "files-1", MountPath: "/etc/shop/tls.key", SubPath: "tls.key", ReadOnly: true},
		{Name: "files-0", MountPath: "/etc/shop/log.yaml", SubPath: "log.yaml", ReadOnly: true},
	})
	eq(t, "refs", ConfigRefs(a), []ConfigRef{{Kind: KindConfigMap, Name: "shop.config"}, {Kind: KindSecret, Name: "certs"}})
}

func TestProbes(t *testing.T) {
	port := intstr.FromInt32(9000)
	tests := []struct {
		name                string
		app                 *v1alpha1.App
		process             int
		startup, ready, liv *corev1.Probe
	}{{
		name: "healthCheckPath implies readiness and liveness",
		app:  newApp(func(a *v1alpha1.App) { a.Spec.HealthCheckPath = "/healthz" }),
		ready: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http"), Scheme: corev1.URISchemeHTTP}},
			PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 1},
		liv: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http"), Scheme: corev1.URISchemeHTTP}},
			InitialDelaySeconds: 10, PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 6},
	}, {
		name: "a set probe replaces the implied one, with the web port and Kubernetes' timings",
		app: newApp(func(a *v1alpha1.App) {
			a.Spec.HealthCheckPath = "/healthz"
			a.Spec.Processes[0].Probes = &v1alpha1.Probes{
				Startup:   &v1alpha1.Probe{TCPSocket: &v1alpha1.TCPProbe{}, FailureThreshold: 30},
				Readiness: &v1alpha1.Probe{HTTPGet: &v1alpha1.HTTPProbe{Path: "/ready"}, PeriodSeconds: 2},
			}
		}),
		startup: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}},
			PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 30},
		ready: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http"), Scheme: corev1.URISchemeHTTP}},
			PeriodSeconds: 2, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3},
		liv: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http"), Scheme: corev1.URISchemeHTTP}},
			InitialDelaySeconds: 10, PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 6},
	}, {
		name: "a worker's exec and named-port probes",
		app: newApp(withProcess(v1alpha1.Process{Name: "worker", Probes: &v1alpha1.Probes{
			Liveness:  &v1alpha1.Probe{Exec: &v1alpha1.ExecProbe{Command: []string{"celery", "inspect", "ping"}}, TimeoutSeconds: 5},
			Readiness: &v1alpha1.Probe{TCPSocket: &v1alpha1.TCPProbe{Port: &port}},
		}})),
		process: 1,
		ready: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: port}},
			PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3},
		liv: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"celery", "inspect", "ping"}}},
			PeriodSeconds: 10, TimeoutSeconds: 5, SuccessThreshold: 1, FailureThreshold: 3},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Deployment(tt.app, tt.app.Spec.Processes[tt.process], "").Spec.Template.Spec.Containers[0]
			eq(t, "startup", c.StartupProbe, tt.startup)
			eq(t, "readiness", c.ReadinessProbe, tt.ready)
			eq(t, "liveness", c.LivenessProbe, tt.liv)
		})
	}
}

func TestServiceAndIngressSettings(t *testing.T) {
	a := newApp(func(a *v1alpha1.App) {
		a.Spec.Ports = []v1alpha1.Port{{Name: "grpc", Port: 9090, ServicePort: 90}, {Name: "dns", Port: 5353, Protocol: corev1.ProtocolUDP}}
		a.Spec.Service = &v1alpha1.ServiceSettings{Type: corev1.ServiceTypeLoadBalancer, Annotations: map[string]string{"lb": "internal"}}
		a.Spec.Ingress = &v1alpha1.IngressSettings{Annotations: map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"}}
		a.Spec.Routes = []v1alpha1.Route{{Host: "shop.example.com", TLSSecretName: "shop-tls"}, {Host: "api.example.com"}}
	})
	svc := Service(a)
	eq(t, "type", svc.Spec.Type, corev1.ServiceTypeLoadBalancer)
	eq(t, "annotations", svc.Annotations, map[string]string{"lb": "internal"})
	eq(t, "ports", svc.Spec.Ports, []corev1.ServicePort{
		{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP},
		{Name: "grpc", Port: 90, TargetPort: intstr.FromString("grpc"), Protocol: corev1.ProtocolTCP},
		{Name: "dns", Port: 5353, TargetPort: intstr.FromString("dns"), Protocol: corev1.ProtocolUDP},
	})
	ing := Ingress(a)
	eq(t, "ingress annotations", ing.Annotations, map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"})
	eq(t, "per-route TLS", ing.Spec.TLS, []networkingv1.IngressTLS{{Hosts: []string{"shop.example.com"}, SecretName: "shop-tls"}})
	eq(t, "default type", Service(newApp()).Spec.Type, corev1.ServiceTypeClusterIP)
}

func TestAutoscalingTargetsAndBehavior(t *testing.T) {
	window := int32(60)
	behavior := &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: &window}}
	tests := []struct {
		name     string
		a        v1alpha1.Autoscaling
		resource []corev1.ResourceName
		targets  []int32
	}{
		{"CPU at 80 by default", v1alpha1.Autoscaling{MaxReplicas: 3}, []corev1.ResourceName{corev1.ResourceCPU}, []int32{80}},
		{"memory only", v1alpha1.Autoscaling{MaxReplicas: 3, TargetMemoryUtilizationPercentage: 70}, []corev1.ResourceName{corev1.ResourceMemory}, []int32{70}},
		{"both", v1alpha1.Autoscaling{MaxReplicas: 3, TargetCPUUtilizationPercentage: 50, TargetMemoryUtilizationPercentage: 70},
			[]corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory}, []int32{50, 70}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			as := tt.a
			as.Behavior = behavior
			hpa := HorizontalPodAutoscaler(newApp(), v1alpha1.Process{Name: "web", Autoscaling: &as})
			var names []corev1.ResourceName
			var targets []int32
			for _, m := range hpa.Spec.Metrics {
				names = append(names, m.Resource.Name)
				targets = append(targets, *m.Resource.Target.AverageUtilization)
			}
			eq(t, "resources", names, tt.resource)
			eq(t, "targets", targets, tt.targets)
			eq(t, "behavior", hpa.Spec.Behavior, behavior)
		})
	}
}

func TestConfigHashCountsOnlyUsedKeys(t *testing.T) {
	ref := ConfigRef{Kind: KindConfigMap, Name: "cfg"}
	oneKey := newApp(func(a *v1alpha1.App) {
		a.Spec.Files = []v1alpha1.File{{Path: "/etc/a", ConfigMap: &v1alpha1.KeyRef{Name: "cfg", Key: "a"}}}
		a.Spec.Processes[0].Env = []corev1.EnvVar{{Name: "B", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "b"}}}}
	})
	whole := newApp(func(a *v1alpha1.App) {
		a.Spec.Files = oneKey.Spec.Files
		a.Spec.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}
	})
	hash := func(app *v1alpha1.App, data map[string]string) string {
		d := map[string][]byte{}
		for k, v := range data {
			d[k] = []byte(v)
		}
		return ConfigHash(nil, []Config{{Ref: ref, Found: true, Data: d, Keys: usedKeys(app)["ConfigMap/cfg"]}})
	}
	base := map[string]string{"a": "1", "b": "2", "other": "x"}
	tests := []struct {
		name    string
		app     *v1alpha1.App
		data    map[string]string
		changes bool
	}{
		{"an unused key changes", oneKey, map[string]string{"a": "1", "b": "2", "other": "y"}, false},
		{"an unused key goes", oneKey, map[string]string{"a": "1", "b": "2"}, false},
		{"a mounted key changes", oneKey, map[string]string{"a": "9", "b": "2", "other": "x"}, true},
		{"a process's env key changes", oneKey, map[string]string{"a": "1", "b": "9", "other": "x"}, true},
		{"a used key goes", oneKey, map[string]string{"b": "2", "other": "x"}, true},
		{"with envFrom every key counts", whole, map[string]string{"a": "1", "b": "2", "other": "y"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eq(t, "changed", hash(tt.app, tt.data) != hash(tt.app, base), tt.changes)
		})
	}
}

func TestCheckProbesAndNames(t *testing.T) {
	f := &operator.Findings{}
	CheckProbes(newApp(withProcess(v1alpha1.Process{Name: "worker", Probes: &v1alpha1.Probes{
		Readiness: &v1alpha1.Probe{HTTPGet: &v1alpha1.HTTPProbe{Path: "/"}},
		Liveness:  &v1alpha1.Probe{Exec: &v1alpha1.ExecProbe{Command: []string{"true"}}},
	}})), f)
	eq(t, "probe problems", f.Problems, []string{"spec.processes[worker].probes.readiness: name a port (a number or a port name): only the web process has a default port"})

	shop := newApp(withProcess(v1alpha1.Process{Name: "admin-web"}))
	other := *newApp(func(a *v1alpha1.App) { a.Name = "shop-admin" })
	f = &operator.Findings{}
	CheckNames(shop, []v1alpha1.App{*shop, other}, f)
	eq(t, "name problems", f.Problems, []string{"spec.processes[admin-web]: its Deployment shop-admin-web would have the name of App shop-admin's process web; rename the process"})
	f = &operator.Findings{}
	CheckNames(&other, []v1alpha1.App{*shop, other}, f)
	if len(f.Problems) != 1 || !strings.Contains(f.Problems[0], "App shop's process admin-web") {
		t.Errorf("the other way round: %v", f.Problems)
	}
}

func TestStatusOfAnAutoscaledProcess(t *testing.T) {
	a := newApp(func(a *v1alpha1.App) {
		a.Spec.Processes[0].Autoscaling = &v1alpha1.Autoscaling{MinReplicas: 2, MaxReplicas: 10}
		a.Spec.Processes[0].Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}
	})
	tests := []struct {
		name                     string
		replicas, updated, avail int32
		ready                    metav1.ConditionStatus
	}{
		{"a scale-up with its new pods starting stays Ready", 5, 5, 2, metav1.ConditionTrue},
		{"below the floor is not Ready", 5, 5, 1, metav1.ConditionFalse},
		{"old pods left is rolling out", 5, 3, 5, metav1.ConditionFalse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := deploymentWith(1, 1, tt.replicas, tt.updated, tt.avail)
			d.Status.Replicas = tt.replicas
			st := Status(a, map[string]*appsv1.Deployment{"web": d}, nil, nil, metav1.Now())
			eq(t, "ready", condition(st, ConditionReady), tt.ready)
		})
	}
}

func condition(st v1alpha1.AppStatus, typ string) metav1.ConditionStatus {
	for _, c := range st.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}
