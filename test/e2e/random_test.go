package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operators/app"
	"github.com/setpoint-dev/setpoint/testkit"
)

// randomEdits is how many random edits TestRandomEditsConvergeExactly
// makes in make test (about a second each): every run draws new ones, so
// CI covers more than one run could. make chaos makes 200
// (SETPOINT_RANDOM_EDITS); SETPOINT_RANDOM_SEED replays a failed run.
const randomEdits = 60

// TestRandomEditsConvergeExactly makes random edits to an App (fields
// added, removed and changed; quantities; env values that look like
// numbers; list entries; processes; routes; autoscaling on and off).
// After each one converges, every child is what a fresh server-side
// apply of the desired objects gives in an empty namespace, no other
// child is left, and a pass with nothing to do writes nothing.
func TestRandomEditsConvergeExactly(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	scratch := env.Namespace(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SETPOINT_RANDOM_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replay with SETPOINT_RANDOM_SEED=%d", seed)
		}
	})
	edits := testkit.EnvCount(t, "SETPOINT_RANDOM_EDITS", randomEdits)
	rnd := rand.New(rand.NewPCG(seed, 14))
	var counter testkit.WriteCounter
	passes, count := passCounter()
	startApps(t, ns, &counter, count)
	a := &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Name: "shape", Namespace: ns},
		Spec:       appsv1alpha1.AppSpec{Image: "example/shape:1", Processes: []appsv1alpha1.Process{{Name: "web"}}},
	}
	testkit.Create(t, a)
	for i := range edits {
		var what string
		a = mutateApp(t, ns, "shape", func(a *appsv1alpha1.App) { what = randomEdit(rnd, a) })
		var diff error
		testkit.Eventually(t, wait, func() error {
			fresh := &appsv1alpha1.App{}
			get(t, client.ObjectKeyFromObject(a), fresh)
			if fresh.Status.ObservedGeneration != fresh.Generation || !ready(fresh) {
				return fmt.Errorf("App not ready for generation %d: %+v", fresh.Generation, fresh.Status.Conditions)
			}
			diff = sameAsFreshApply(t, fresh, scratch)
			return diff
		})
		// A pass with nothing to do: none of its requests may write.
		before := counter.Count()
		touch(t, ns, "shape", passes, strconv.Itoa(i))
		if n := counter.Count() - before; n != 0 {
			w := counter.Writes()
			t.Fatalf("edit %d (%s): a converged pass wrote %d times: %v", i+1, what, n, w[len(w)-int(n):])
		}
	}
}

func ready(a *appsv1alpha1.App) bool {
	for _, c := range a.Status.Conditions {
		if c.Type == app.ConditionReady {
			return c.Status == metav1.ConditionTrue && c.ObservedGeneration == a.Generation
		}
	}
	return false
}

// randomEdit changes a in one random way that the CRD accepts, and says
// what it did.
func randomEdit(r *rand.Rand, a *appsv1alpha1.App) string {
	s := &a.Spec
	pick := func(vs ...string) string { return vs[r.IntN(len(vs))] }
	switch r.IntN(12) {
	case 0:
		s.Image = pick("example/shape:1", "example/shape:2", "example/shape:1.10", "example/shape:1.1")
		return "image " + s.Image
	case 1:
		s.Port = int32(pick2(r, 0, 8080, 9000))
		return fmt.Sprint("port ", s.Port)
	case 2, 3:
		return editEnv(r, s, pick)
	case 4:
		s.HealthCheckPath = pick("", "/healthz", "/ready")
		return "health check " + s.HealthCheckPath
	case 5:
		switch r.IntN(3) {
		case 0:
			s.Metrics = nil
		case 1:
			s.Metrics = &appsv1alpha1.Metrics{Port: 9090}
		default:
			s.Metrics = &appsv1alpha1.Metrics{Path: "/m"}
		}
		return fmt.Sprintf("metrics %+v", s.Metrics)
	case 6:
		return editProcesses(r, s)
	case 7:
		i := r.IntN(len(s.Processes))
		return editScale(r, &s.Processes[i])
	case 8:
		i := r.IntN(len(s.Processes))
		return editResources(r, &s.Processes[i], pick)
	case 9:
		return editRoutes(r, s, pick)
	case 10:
		return editPod(r, s, pick)
	default:
		return editProbesAndPorts(r, s, pick)
	}
}

// editPod changes the pod settings of issue 20: pod labels, tolerations,
// a process's image and env.
func editPod(r *rand.Rand, s *appsv1alpha1.AppSpec, pick func(...string) string) string {
	if s.Pod == nil {
		s.Pod = &appsv1alpha1.PodSettings{}
	}
	p := &s.Processes[r.IntN(len(s.Processes))]
	switch r.IntN(4) {
	case 0:
		if v := pick("", "a", "b"); v == "" {
			s.Pod.Labels = nil
		} else {
			s.Pod.Labels = map[string]string{"team": v}
		}
		return fmt.Sprintf("pod labels %v", s.Pod.Labels)
	case 1:
		if len(s.Pod.Tolerations) > 0 {
			s.Pod.Tolerations = nil
			return "no tolerations"
		}
		s.Pod.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: pick("web", "batch"), Effect: corev1.TaintEffectNoSchedule}}
		return "toleration " + s.Pod.Tolerations[0].Value
	case 2:
		p.Image = pick("", "example/other:1", "example/other:1.10")
		return p.Name + " image " + p.Image
	default:
		if len(p.Env) > 0 {
			p.Env = nil
			return p.Name + " env removed"
		}
		p.Env = []corev1.EnvVar{{Name: "A", Value: pick("own", "1.10", "010")}}
		return p.Name + " env A=" + p.Env[0].Value
	}
}

// editProbesAndPorts changes web's probes, the extra ports and the
// Ingress annotations.
func editProbesAndPorts(r *rand.Rand, s *appsv1alpha1.AppSpec, pick func(...string) string) string {
	switch r.IntN(3) {
	case 0:
		i := slices.IndexFunc(s.Processes, func(p appsv1alpha1.Process) bool { return p.Name == "web" })
		if i < 0 {
			return "no web for probes"
		}
		switch pick("none", "http", "tcp", "exec") {
		case "none":
			s.Processes[i].Probes = nil
		case "http":
			s.Processes[i].Probes = &appsv1alpha1.Probes{Readiness: &appsv1alpha1.Probe{HTTPGet: &appsv1alpha1.HTTPProbe{Path: "/r"}, PeriodSeconds: 5}}
		case "tcp":
			s.Processes[i].Probes = &appsv1alpha1.Probes{Startup: &appsv1alpha1.Probe{TCPSocket: &appsv1alpha1.TCPProbe{}, FailureThreshold: 30}}
		default:
			s.Processes[i].Probes = &appsv1alpha1.Probes{Liveness: &appsv1alpha1.Probe{Exec: &appsv1alpha1.ExecProbe{Command: []string{"true"}}}}
		}
		return fmt.Sprintf("web probes %+v", s.Processes[i].Probes)
	case 1:
		if len(s.Ports) > 0 {
			s.Ports = nil
			return "no extra ports"
		}
		s.Ports = []appsv1alpha1.Port{{Name: "grpc", Port: int32(pick2(r, 9191, 9192)), Protocol: corev1.ProtocolTCP}}
		return fmt.Sprint("extra port ", s.Ports[0].Port)
	default:
		if s.Ingress != nil {
			s.Ingress = nil
			return "no ingress annotations"
		}
		s.Ingress = &appsv1alpha1.IngressSettings{Annotations: map[string]string{"example.com/rewrite": pick("/", "/$1")}}
		return "ingress annotations"
	}
}

func pick2(r *rand.Rand, vs ...int) int { return vs[r.IntN(len(vs))] }

func editEnv(r *rand.Rand, s *appsv1alpha1.AppSpec, pick func(...string) string) string {
	values := []string{"1.10", "1.1", "010", "10", "0.5", "500m", "1Gi", "1024Mi", "true", "", "x"}
	switch {
	case len(s.Env) > 0 && r.IntN(3) == 0:
		i := r.IntN(len(s.Env))
		name := s.Env[i].Name
		s.Env = slices.Delete(s.Env, i, i+1)
		return "remove env " + name
	case len(s.Env) > 0 && r.IntN(2) == 0:
		i := r.IntN(len(s.Env))
		s.Env[i].Value = values[r.IntN(len(values))]
		return fmt.Sprintf("env %s=%q", s.Env[i].Name, s.Env[i].Value)
	}
	name := pick("A", "B", "C", "D")
	for _, e := range s.Env {
		if e.Name == name {
			return "env " + name + " kept"
		}
	}
	v := values[r.IntN(len(values))]
	s.Env = append(s.Env, corev1.EnvVar{Name: name, Value: v})
	return fmt.Sprintf("add env %s=%q", name, v)
}

func editProcesses(r *rand.Rand, s *appsv1alpha1.AppSpec) string {
	names := []string{"worker", "jobs"}
	name := names[r.IntN(len(names))]
	for i, p := range s.Processes {
		if p.Name == name {
			s.Processes = slices.Delete(s.Processes, i, i+1)
			return "remove process " + name
		}
	}
	p := appsv1alpha1.Process{Name: name, Command: []string{"./" + name}}
	if r.IntN(2) == 0 {
		p.Args = []string{"--queue", name}
	}
	s.Processes = append(s.Processes, p)
	return "add process " + name
}

// editScale switches a process between a fixed size (1 to 3) and
// autoscaling. The autoscaler's bounds always hold the current size
// (min 1, max at least 3), so the HPA, which has no metrics here, never
// changes the count on its own.
func editScale(r *rand.Rand, p *appsv1alpha1.Process) string {
	if p.Autoscaling == nil && r.IntN(3) == 0 {
		p.Replicas = nil
		p.Autoscaling = &appsv1alpha1.Autoscaling{MinReplicas: 1, MaxReplicas: int32(3 + r.IntN(3)),
			TargetCPUUtilizationPercentage: int32(pick2(r, 0, 60, 80))}
		if p.Resources.Requests == nil {
			p.Resources.Requests = corev1.ResourceList{}
		}
		if _, ok := p.Resources.Requests[corev1.ResourceCPU]; !ok {
			p.Resources.Requests[corev1.ResourceCPU] = resource.MustParse("100m")
		}
		return fmt.Sprintf("%s autoscaling %+v", p.Name, *p.Autoscaling)
	}
	p.Autoscaling = nil
	switch r.IntN(4) {
	case 0:
		p.Replicas = nil
	default:
		p.Replicas = new(int32(1 + r.IntN(3)))
	}
	return fmt.Sprintf("%s replicas %v", p.Name, p.Replicas)
}

func editResources(r *rand.Rand, p *appsv1alpha1.Process, pick func(...string) string) string {
	if p.Resources.Requests == nil {
		p.Resources.Requests = corev1.ResourceList{}
	}
	switch r.IntN(4) {
	case 0:
		p.Resources.Requests[corev1.ResourceCPU] = resource.MustParse(pick("100m", "0.1", "250m", "0.25"))
	case 1:
		p.Resources.Requests[corev1.ResourceMemory] = resource.MustParse(pick("64Mi", "128Mi", "0.125Gi", "1Gi", "1024Mi"))
	case 2:
		if p.Autoscaling == nil {
			delete(p.Resources.Requests, corev1.ResourceCPU)
		}
		delete(p.Resources.Requests, corev1.ResourceMemory)
	default:
		if p.Resources.Limits == nil {
			p.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")}
		} else {
			p.Resources.Limits = nil
		}
	}
	return fmt.Sprintf("%s resources %v", p.Name, p.Resources)
}

func editRoutes(r *rand.Rand, s *appsv1alpha1.AppSpec, pick func(...string) string) string {
	switch {
	case len(s.Routes) > 0 && r.IntN(3) == 0:
		s.Routes = s.Routes[:len(s.Routes)-1]
		return "remove a route"
	case len(s.Routes) > 0 && r.IntN(2) == 0:
		rt := &s.Routes[r.IntN(len(s.Routes))]
		if len(rt.Paths) > 0 {
			rt.Paths = nil
		} else {
			rt.Paths = []string{"/api", pick("/v1", "/v2")}
		}
		return fmt.Sprintf("paths of %s: %v", rt.Host, rt.Paths)
	case r.IntN(4) == 0:
		if s.IngressClassName == nil {
			s.IngressClassName = new("nginx")
		} else {
			s.IngressClassName = nil
		}
		return fmt.Sprint("ingress class ", s.IngressClassName)
	}
	host := pick("a.example.com", "b.example.com", "c.example.com")
	for _, rt := range s.Routes {
		if rt.Host == host {
			return "route " + host + " kept"
		}
	}
	s.Routes = append(s.Routes, appsv1alpha1.Route{Host: host})
	return "add route " + host
}

// sameAsFreshApply compares each live child of a with a server-side
// dry-run apply of its desired object in the empty namespace scratch,
// and checks that no other child is left.
func sameAsFreshApply(t *testing.T, a *appsv1alpha1.App, scratch string) error {
	t.Helper()
	c := testkit.Env(t).Client
	want := map[string]bool{}
	for _, d := range app.Children(a, "") {
		gvk, err := apiutil.GVKForObject(d, scheme)
		if err != nil {
			t.Fatal(err)
		}
		want[gvk.Kind+"/"+d.GetName()] = true
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(d)
		if err != nil {
			t.Fatal(err)
		}
		fresh := &unstructured.Unstructured{Object: m}
		fresh.SetGroupVersionKind(gvk)
		fresh.SetNamespace(scratch)
		unstructured.RemoveNestedField(fresh.Object, "metadata", "annotations", "setpoint.dev/hand-off")
		unstructured.RemoveNestedField(fresh.Object, "metadata", "creationTimestamp")
		delete(fresh.Object, "status")
		if err := c.Apply(t.Context(), client.ApplyConfigurationFromUnstructured(fresh), client.FieldOwner("fresh"), client.ForceOwnership, client.DryRunAll); err != nil {
			t.Fatalf("dry-run apply of %s %s: %v", gvk.Kind, d.GetName(), err)
		}
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(gvk)
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: a.Namespace, Name: d.GetName()}, live); err != nil {
			return fmt.Errorf("%s %s: %w", gvk.Kind, d.GetName(), err)
		}
		autoscaled := gvk.Kind == "Deployment" && !hasField(m, "spec", "replicas")
		if l, f := normalized(live, autoscaled), normalized(fresh, autoscaled); !reflect.DeepEqual(l, f) {
			return fmt.Errorf("%s %s differs from a fresh apply:\nlive  %s\nfresh %s", gvk.Kind, d.GetName(), jsonOf(l), jsonOf(f))
		}
	}
	for _, o := range appChildren(t, a.Namespace, client.MatchingLabels{"setpoint.dev/owner-uid": string(a.UID)}) {
		if o.GetDeletionTimestamp() == nil && !want[o.kind+"/"+o.GetName()] {
			return fmt.Errorf("%s %s is left over", o.kind, o.GetName())
		}
	}
	return nil
}

// child is one of an App's children, with its kind.
type child struct {
	kind string
	metav1.Object
}

// appChildren lists every object in ns of the kinds an App has as
// children, selected by sel.
func appChildren(t *testing.T, ns string, sel client.ListOption) []child {
	t.Helper()
	c := testkit.Env(t).Client
	var all []child
	for _, list := range []client.ObjectList{&appsv1.DeploymentList{}, &corev1.ServiceList{}, &networkingv1.IngressList{},
		&autoscalingv2.HorizontalPodAutoscalerList{}, &policyv1.PodDisruptionBudgetList{}} {
		if err := c.List(t.Context(), list, client.InNamespace(ns), sel); err != nil {
			t.Fatal(err)
		}
		gvk, err := apiutil.GVKForObject(list, scheme)
		if err != nil {
			t.Fatal(err)
		}
		items, err := metaItems(list)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range items {
			all = append(all, child{gvk.Kind[:len(gvk.Kind)-len("List")], o})
		}
	}
	return all
}

func hasField(m map[string]any, path ...string) bool {
	_, found, _ := unstructured.NestedFieldNoCopy(m, path...)
	return found
}

func metaItems(list client.ObjectList) ([]metav1.Object, error) {
	objs, err := apimeta.ExtractList(list)
	if err != nil {
		return nil, err
	}
	out := make([]metav1.Object, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(metav1.Object))
	}
	return out, nil
}

// normalized is what a child's comparison looks at: its spec, labels and
// annotations, without what only exists because of where it lives (its
// owner's labels, the Deployment controller's revision, a Service's
// allocated addresses) and, for an autoscaled Deployment, the replica
// count the autoscaler owns.
func normalized(u *unstructured.Unstructured, autoscaled bool) map[string]any {
	spec, _, _ := unstructured.NestedMap(u.Object, "spec")
	for _, f := range []string{"clusterIP", "clusterIPs"} {
		delete(spec, f)
	}
	if autoscaled {
		delete(spec, "replicas")
	}
	labels := u.GetLabels()
	delete(labels, "setpoint.dev/owner-uid")
	delete(labels, "app.kubernetes.io/managed-by")
	ann := u.GetAnnotations()
	for _, k := range []string{"setpoint.dev/applied-intent", "deployment.kubernetes.io/revision"} {
		delete(ann, k)
	}
	out := map[string]any{"spec": spec}
	if len(labels) > 0 {
		out["labels"] = labels
	}
	if len(ann) > 0 {
		out["annotations"] = ann
	}
	return out
}
