package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operators/app"
	"github.com/setpoint-dev/setpoint/testkit"
)

// TestExampleApp walks examples/app.yaml through its life: it converges,
// follows an image change, reverts drift, rolls on a config change,
// prunes what is no longer declared and is cleaned up on delete.
func TestExampleApp(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	startApps(t, ns, nil, nil)
	applyFile(t, "../../examples/app.yaml", ns)
	c := env.Client
	key := func(name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }

	// Converges: children with the expected fields, pods running, Ready.
	a := waitReady(t, ns, "podinfo", "3/3")
	if a.Status.URL != "http://podinfo.localtest.me/" {
		t.Errorf("url %q", a.Status.URL)
	}
	web := &appsv1.Deployment{}
	get(t, key("podinfo-web"), web)
	ctr := web.Spec.Template.Spec.Containers[0]
	if ctr.Image != "ghcr.io/stefanprodan/podinfo:6.7.1" || ctr.Ports[0].ContainerPort != 9898 || ctr.ReadinessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("web container %+v", ctr)
	}
	if web.Spec.Template.Annotations["prometheus.io/scrape"] != "true" || web.Spec.Template.Annotations[app.AnnotationConfigHash] == "" {
		t.Errorf("web template annotations %v", web.Spec.Template.Annotations)
	}
	worker := &appsv1.Deployment{}
	get(t, key("podinfo-worker"), worker)
	if got := worker.Spec.Template.Spec.Containers[0].Command; !slices.Equal(got, []string{"./podinfo", "--port=9899"}) || *worker.Spec.Replicas != 1 {
		t.Errorf("worker command %v replicas %d", got, *worker.Spec.Replicas)
	}
	svc := &corev1.Service{}
	get(t, key("podinfo"), svc)
	if p := svc.Spec.Ports[0]; p.Port != 80 || p.TargetPort.StrVal != "http" || svc.Spec.Selector[app.LabelProcess] != "web" {
		t.Errorf("service %+v", svc.Spec)
	}
	ing := &networkingv1.Ingress{}
	get(t, key("podinfo"), ing)
	if r := ing.Spec.Rules; len(r) != 1 || r[0].Host != "podinfo.localtest.me" || r[0].HTTP.Paths[0].Backend.Service.Name != "podinfo" {
		t.Errorf("ingress rules %+v", r)
	}
	hpa := &autoscalingv2.HorizontalPodAutoscaler{}
	get(t, key("podinfo-web"), hpa)
	if *hpa.Spec.MinReplicas != 2 || hpa.Spec.MaxReplicas != 5 || *hpa.Spec.Metrics[0].Resource.Target.AverageUtilization != 70 {
		t.Errorf("hpa %+v", hpa.Spec)
	}
	get(t, key("podinfo-web"), &policyv1.PodDisruptionBudget{})
	waitPods(t, ns, "podinfo", "web", 2, "")
	waitPods(t, ns, "podinfo", "worker", 1, "")
	checkPrinterColumns(t, ns, "podinfo")

	// The autoscaler raised web from the Deployment's default 1 to its
	// minimum 2; the operator must not own that field, or every pass
	// would undo it.
	if *web.Spec.Replicas != 2 {
		t.Errorf("web replicas %d, want the HPA's 2", *web.Spec.Replicas)
	}
	ownsReplicas(t, web, false)

	// Image change: the rollout happens and the status follows it.
	a = mutateApp(t, ns, "podinfo", func(a *appsv1alpha1.App) { a.Spec.Image = "ghcr.io/stefanprodan/podinfo:6.7.2" })
	waitReady(t, ns, "podinfo", "3/3")
	get(t, key("podinfo-web"), web)
	if img := web.Spec.Template.Spec.Containers[0].Image; img != "ghcr.io/stefanprodan/podinfo:6.7.2" {
		t.Errorf("web image %s", img)
	}
	if *web.Spec.Replicas != 2 {
		t.Errorf("web replicas %d after a re-render, want the HPA's 2 kept", *web.Spec.Replicas)
	}
	ownsReplicas(t, web, false)

	// Drift: a hand edit is reverted and a hand delete is undone.
	get(t, key("podinfo"), svc)
	svc.Spec.Ports[0].Port = 8081
	if err := c.Update(t.Context(), svc); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(t.Context(), ing); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, wait, func() error {
		if err := c.Get(t.Context(), key("podinfo"), svc); err != nil {
			return err
		}
		if p := svc.Spec.Ports[0].Port; p != 80 {
			return fmt.Errorf("service port %d", p)
		}
		fresh := &networkingv1.Ingress{}
		if err := c.Get(t.Context(), key("podinfo"), fresh); err != nil {
			return err
		}
		if fresh.UID == ing.UID {
			return fmt.Errorf("ingress not deleted yet")
		}
		return nil
	})

	// A change in the referenced ConfigMap rolls the pods.
	oldHash := web.Spec.Template.Annotations[app.AnnotationConfigHash]
	cm := &corev1.ConfigMap{}
	get(t, key("podinfo-config"), cm)
	cm.Data["PODINFO_UI_MESSAGE"] = "Hello again"
	if err := c.Update(t.Context(), cm); err != nil {
		t.Fatal(err)
	}
	var newHash string
	testkit.Eventually(t, wait, func() error {
		if err := c.Get(t.Context(), key("podinfo-web"), web); err != nil {
			return err
		}
		if newHash = web.Spec.Template.Annotations[app.AnnotationConfigHash]; newHash == oldHash {
			return fmt.Errorf("config hash unchanged")
		}
		return nil
	})
	waitPods(t, ns, "podinfo", "web", 2, newHash)
	waitPods(t, ns, "podinfo", "worker", 1, newHash)
	waitReady(t, ns, "podinfo", "3/3")

	// Removing a process and the routes prunes their children.
	mutateApp(t, ns, "podinfo", func(a *appsv1alpha1.App) {
		a.Spec.Processes = a.Spec.Processes[:1]
		a.Spec.Routes = nil
	})
	testkit.EventuallyGone(t, c, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "podinfo-worker"}}, wait)
	testkit.EventuallyGone(t, c, &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "podinfo"}}, wait)
	a = waitReady(t, ns, "podinfo", "2/2")
	if a.Status.URL != "http://podinfo."+ns+".svc" {
		t.Errorf("url without routes %q", a.Status.URL)
	}

	// Deleting the App takes every child with it.
	if err := c.Delete(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{&appsv1.Deployment{}, &autoscalingv2.HorizontalPodAutoscaler{}, &policyv1.PodDisruptionBudget{}} {
		o.SetNamespace(ns)
		o.SetName("podinfo-web")
		testkit.EventuallyGone(t, c, o, wait)
	}
	testkit.EventuallyGone(t, c, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "podinfo"}}, wait)
}

// TestConvergedAppMakesNoWrites: once an App is Ready, passes over it
// (resyncs, a label on the App, status updates of its children) write
// nothing: its children as built compare equal to what the API server
// stored, defaults and all.
func TestConvergedAppMakesNoWrites(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	var counter testkit.WriteCounter
	var resyncs atomic.Int64
	startApps(t, ns, &counter, func(op *operator.Operator) {
		// A second watch of the same kind sees the same resyncs.
		operator.Watch[*appsv1alpha1.App](op).OnEvent(func(_ context.Context, _ operator.Event[*appsv1alpha1.App]) error {
			resyncs.Add(1)
			return nil
		})
	})
	a := &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Name: "quiet", Namespace: ns},
		Spec: appsv1alpha1.AppSpec{
			Image:           "example/quiet:1",
			HealthCheckPath: "/healthz",
			Metrics:         &appsv1alpha1.Metrics{Port: 9090},
			Env:             []corev1.EnvVar{{Name: "A", Value: "1"}},
			Routes:          []appsv1alpha1.Route{{Host: "quiet.example.com", TLSSecretName: "quiet-tls"}},
			Processes: []appsv1alpha1.Process{
				{Name: "web", Replicas: new(int32(2)), Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("0.1"), corev1.ResourceMemory: resource.MustParse("64Mi")}}},
				{Name: "worker", Autoscaling: &appsv1alpha1.Autoscaling{MaxReplicas: 3}, Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}},
			},
		},
	}
	if err := env.Client.Create(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "quiet", "3/3")
	before := counter.Writes()
	mutateApp(t, ns, "quiet", func(a *appsv1alpha1.App) { a.Labels = map[string]string{"touched": "yes"} })
	seen := resyncs.Load()
	testkit.Eventually(t, wait, func() error {
		if n := resyncs.Load() - seen; n < 3 {
			return fmt.Errorf("%d passes so far", n)
		}
		return nil
	})
	if extra := counter.Writes()[len(before):]; len(extra) != 0 {
		t.Errorf("converged passes wrote: %v", extra)
	}
}

// TestBadAppsAreRefused: the API server refuses bad input with the
// message of the CRD's schema or CEL rule.
func TestBadAppsAreRefused(t *testing.T) {
	installCRDs(t)
	env := testkit.Env(t)
	ns := env.Namespace(t)
	cpu := corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}
	tests := []struct {
		name   string
		app    string
		change func(*appsv1alpha1.App)
		want   string
	}{
		{"empty image", "a", func(a *appsv1alpha1.App) { a.Spec.Image = "" }, "spec.image: Invalid value"},
		{"image with spaces", "a", func(a *appsv1alpha1.App) { a.Spec.Image = "nginx latest" }, "image must not contain spaces"},
		{"no processes", "a", func(a *appsv1alpha1.App) { a.Spec.Processes = nil }, "spec.processes"},
		{"port out of range", "a", func(a *appsv1alpha1.App) { a.Spec.Port = 70000 }, "spec.port: Invalid value: 70000"},
		{"min above max", "a", func(a *appsv1alpha1.App) {
			a.Spec.Processes[0].Autoscaling = &appsv1alpha1.Autoscaling{MinReplicas: 5, MaxReplicas: 2}
			a.Spec.Processes[0].Resources = cpu
		}, "minReplicas must not be greater than maxReplicas"},
		{"replicas and autoscaling", "a", func(a *appsv1alpha1.App) {
			a.Spec.Processes[0].Replicas = new(int32(2))
			a.Spec.Processes[0].Autoscaling = &appsv1alpha1.Autoscaling{MaxReplicas: 2}
			a.Spec.Processes[0].Resources = cpu
		}, "set replicas or autoscaling, not both"},
		{"autoscaling without a CPU request", "a", func(a *appsv1alpha1.App) {
			a.Spec.Processes[0].Autoscaling = &appsv1alpha1.Autoscaling{MaxReplicas: 2}
		}, "autoscaling on CPU needs resources.requests.cpu"},
		{"duplicate hosts", "a", func(a *appsv1alpha1.App) {
			a.Spec.Routes = []appsv1alpha1.Route{{Host: "x.example.com"}, {Host: "x.example.com", Paths: []string{"/api"}}}
		}, "each host may appear in only one route"},
		{"routes without web", "a", func(a *appsv1alpha1.App) {
			a.Spec.Processes[0].Name = "worker"
			a.Spec.Routes = []appsv1alpha1.Route{{Host: "x.example.com"}}
		}, "routes need a process named web"},
		{"duplicate process", "a", func(a *appsv1alpha1.App) {
			a.Spec.Processes = append(a.Spec.Processes, a.Spec.Processes[0])
		}, "Duplicate value"},
		{"bad process name", "a", func(a *appsv1alpha1.App) { a.Spec.Processes[0].Name = "Web_1" }, "spec.processes[0].name"},
		{"path without slash", "a", func(a *appsv1alpha1.App) {
			a.Spec.Routes = []appsv1alpha1.Route{{Host: "x.example.com", Paths: []string{"api"}}}
		}, "spec.routes[0].paths[0]"},
		{"extra port named http", "a", func(a *appsv1alpha1.App) { a.Spec.Ports = []appsv1alpha1.Port{{Name: "http", Port: 9000}} },
			"http and metrics name the ports Setpoint makes"},
		{"file from two sources", "a", func(a *appsv1alpha1.App) {
			a.Spec.Files = []appsv1alpha1.File{{Path: "/etc/x", ConfigMap: &appsv1alpha1.KeyRef{Name: "a", Key: "k"}, Secret: &appsv1alpha1.KeyRef{Name: "b", Key: "k"}}}
		}, "a file comes from exactly one of configMap and secret"},
		{"relative file path", "a", func(a *appsv1alpha1.App) {
			a.Spec.Files = []appsv1alpha1.File{{Path: "etc/x", ConfigMap: &appsv1alpha1.KeyRef{Name: "a", Key: "k"}}}
		}, "spec.files[0].path"},
		{"file path with ..", "a", func(a *appsv1alpha1.App) {
			a.Spec.Files = []appsv1alpha1.File{{Path: "/etc/../x", ConfigMap: &appsv1alpha1.KeyRef{Name: "a", Key: "k"}}}
		}, "path must not contain '..'"},
		{"pod label in Setpoint's prefix", "a", func(a *appsv1alpha1.App) {
			a.Spec.Pod = &appsv1alpha1.PodSettings{Labels: map[string]string{app.LabelApp: "other"}}
		}, "pod.labels must not use the apps.setpoint.dev/ prefix"},
		{"probe with two actions", "a", func(a *appsv1alpha1.App) {
			a.Spec.Processes[0].Probes = &appsv1alpha1.Probes{Readiness: &appsv1alpha1.Probe{
				HTTPGet: &appsv1alpha1.HTTPProbe{Path: "/"}, Exec: &appsv1alpha1.ExecProbe{Command: []string{"true"}}}}
		}, "a probe has exactly one of httpGet, tcpSocket and exec"},
		{"autoscaling on memory without a memory request", "a", func(a *appsv1alpha1.App) {
			a.Spec.Processes[0].Autoscaling = &appsv1alpha1.Autoscaling{MaxReplicas: 3, TargetMemoryUtilizationPercentage: 60}
		}, "autoscaling on memory needs resources.requests.memory"},
		{"service of type ExternalName", "a", func(a *appsv1alpha1.App) {
			a.Spec.Service = &appsv1alpha1.ServiceSettings{Type: corev1.ServiceTypeExternalName}
		}, `spec.service.type: Unsupported value: "ExternalName"`},
		{"name with a dot", "my.app", nil, "the App's name must be a DNS label"},
		{"name too long", strings.Repeat("a", 48), nil, "at most 47 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &appsv1alpha1.App{
				ObjectMeta: metav1.ObjectMeta{Name: tt.app, Namespace: ns},
				Spec:       appsv1alpha1.AppSpec{Image: "example/app:1", Processes: []appsv1alpha1.Process{{Name: "web"}}},
			}
			if tt.change != nil {
				tt.change(a)
			}
			err := env.Client.Create(t.Context(), a)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
	// And the same App, fixed, is accepted.
	ok := &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Name: "fine", Namespace: ns},
		Spec:       appsv1alpha1.AppSpec{Image: "example/app:1", Processes: []appsv1alpha1.Process{{Name: "web"}}},
	}
	if err := env.Client.Create(t.Context(), ok); err != nil {
		t.Fatal(err)
	}
	if ok.Spec.Port != 8080 {
		t.Errorf("defaulted port %d, want 8080", ok.Spec.Port)
	}
}

// waitReady waits until the App is Ready for its current generation with
// the given "ready/desired" replicas, and returns it.
func waitReady(t *testing.T, ns, name, replicas string) *appsv1alpha1.App {
	t.Helper()
	a := &appsv1alpha1.App{}
	testkit.Eventually(t, wait, func() error {
		if err := testkit.Env(t).Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, a); err != nil {
			return err
		}
		ready := meta.FindStatusCondition(a.Status.Conditions, app.ConditionReady)
		switch {
		case a.Status.ObservedGeneration != a.Generation:
			return fmt.Errorf("status of generation %d, App at %d", a.Status.ObservedGeneration, a.Generation)
		case ready == nil || ready.Status != metav1.ConditionTrue:
			return fmt.Errorf("not ready: %+v", ready)
		case a.Status.Replicas != replicas:
			return fmt.Errorf("replicas %s, want %s", a.Status.Replicas, replicas)
		}
		return nil
	})
	return a
}

func mutateApp(t *testing.T, ns, name string, change func(*appsv1alpha1.App)) *appsv1alpha1.App {
	t.Helper()
	c := testkit.Env(t).Client
	a := &appsv1alpha1.App{}
	testkit.Eventually(t, wait, func() error {
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, a); err != nil {
			return err
		}
		change(a)
		return c.Update(t.Context(), a)
	})
	return a
}

func get(t *testing.T, key client.ObjectKey, into client.Object) {
	t.Helper()
	if err := testkit.Env(t).Client.Get(t.Context(), key, into); err != nil {
		t.Fatalf("get %T %s: %v", into, key, err)
	}
}

// waitPods waits until exactly n pods of the process run, all with the
// config hash (when not empty).
func waitPods(t *testing.T, ns, appName, process string, n int, hash string) {
	t.Helper()
	testkit.Eventually(t, wait, func() error {
		var pods corev1.PodList
		if err := testkit.Env(t).Client.List(t.Context(), &pods, client.InNamespace(ns),
			client.MatchingLabels{app.LabelApp: appName, app.LabelProcess: process}); err != nil {
			return err
		}
		running := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				return fmt.Errorf("pod %s still terminating", p.Name)
			}
			if hash != "" && p.Annotations[app.AnnotationConfigHash] != hash {
				return fmt.Errorf("pod %s has config hash %q", p.Name, p.Annotations[app.AnnotationConfigHash])
			}
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		if running != n || len(pods.Items) != n {
			return fmt.Errorf("%d of %d pods running, want %d", running, len(pods.Items), n)
		}
		return nil
	})
}

// ownsReplicas checks whether the operator's field manager owns the
// Deployment's spec.replicas.
func ownsReplicas(t *testing.T, d *appsv1.Deployment, want bool) {
	t.Helper()
	owns := false
	for _, m := range d.ManagedFields {
		if m.Manager == "setpoint" && m.FieldsV1 != nil && strings.Contains(string(m.FieldsV1.Raw), `"f:replicas"`) {
			owns = true
		}
	}
	if owns != want {
		t.Errorf("operator owns spec.replicas: %v, want %v", owns, want)
	}
}

// checkPrinterColumns asks the API server for the table kubectl prints.
func checkPrinterColumns(t *testing.T, ns, name string) {
	t.Helper()
	var table metav1.Table
	err := testkit.Env(t).Clientset.Discovery().RESTClient().Get().
		AbsPath("/apis/apps.setpoint.dev/v1alpha1/namespaces", ns, "apps", name).
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").
		Do(t.Context()).Into(&table)
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, c := range table.ColumnDefinitions {
		cols = append(cols, c.Name)
	}
	if want := []string{"Name", "Ready", "Replicas", "Release", "URL", "Age"}; !slices.Equal(cols, want) {
		t.Errorf("columns %v, want %v", cols, want)
	}
	if len(table.Rows) != 1 || fmt.Sprint(table.Rows[0].Cells[1:5]) != "[True 3/3 1 http://podinfo.localtest.me/]" {
		t.Errorf("rows %v", table.Rows)
	}
}
