package e2e

import (
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operators/app"
	"github.com/setpoint-dev/setpoint/testkit"
)

// TestPodsCarryTheAppsPodSettings: a pod of an App with a private image
// carries the pull Secret (what a kubelet pulls with), and the App's pod
// labels, annotations, service account and mounted file.
func TestPodsCarryTheAppsPodSettings(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	startApps(t, ns, nil, nil)
	testkit.Create(t,
		configMap(ns, "shop-config", map[string]string{"app.yaml": "debug: false"}),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop"}},
		&appsv1alpha1.App{
			ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: ns},
			Spec: appsv1alpha1.AppSpec{
				Image:            "registry.example.com/private/shop:1",
				ImagePullSecrets: []corev1.LocalObjectReference{{Name: "registry"}},
				Files:            []appsv1alpha1.File{{Path: "/etc/shop/app.yaml", ConfigMap: &appsv1alpha1.KeyRef{Name: "shop-config", Key: "app.yaml"}}},
				Pod: &appsv1alpha1.PodSettings{
					Labels: map[string]string{"team": "checkout"}, Annotations: map[string]string{"example.com/owner": "checkout"},
					ServiceAccountName: "shop",
				},
				Processes: []appsv1alpha1.Process{{Name: "web"}},
			},
		})
	waitReady(t, ns, "shop", "1/1")
	var pods corev1.PodList
	if err := env.Client.List(t.Context(), &pods, client.InNamespace(ns), client.MatchingLabels{app.LabelApp: "shop"}); err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods: %v (%d)", err, len(pods.Items))
	}
	p := pods.Items[0]
	switch {
	case len(p.Spec.ImagePullSecrets) != 1 || p.Spec.ImagePullSecrets[0].Name != "registry":
		t.Errorf("pull secrets %v", p.Spec.ImagePullSecrets)
	case p.Spec.Containers[0].Image != "registry.example.com/private/shop:1":
		t.Errorf("image %s", p.Spec.Containers[0].Image)
	case p.Labels["team"] != "checkout" || p.Annotations["example.com/owner"] != "checkout":
		t.Errorf("labels %v annotations %v", p.Labels, p.Annotations)
	case p.Spec.ServiceAccountName != "shop":
		t.Errorf("service account %q", p.Spec.ServiceAccountName)
	case !hasMount(p.Spec.Containers[0], "/etc/shop/app.yaml", "app.yaml"):
		t.Errorf("mounts %v", p.Spec.Containers[0].VolumeMounts)
	}
}

func hasMount(c corev1.Container, path, subPath string) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path && m.SubPath == subPath && m.ReadOnly {
			return true
		}
	}
	return false
}

// TestMountedFileChangeRolls: editing a mounted key rolls the pods;
// editing a key of the same ConfigMap that no pod reads rolls nothing.
func TestMountedFileChangeRolls(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	passes, count := passCounter()
	startApps(t, ns, nil, count)
	cm := configMap(ns, "cfg", map[string]string{"app.yaml": "v: 1", "unused": "a"})
	testkit.Create(t, cm, &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Name: "files", Namespace: ns},
		Spec: appsv1alpha1.AppSpec{Image: "example/files:1",
			Files:     []appsv1alpha1.File{{Path: "/etc/app.yaml", ConfigMap: &appsv1alpha1.KeyRef{Name: "cfg", Key: "app.yaml"}}},
			Processes: []appsv1alpha1.Process{{Name: "web", Replicas: new(int32(2))}}},
	})
	waitReady(t, ns, "files", "2/2")
	first := webDeployment(t, ns, "files").Spec.Template.Annotations[app.AnnotationConfigHash]
	if first == "" {
		t.Fatal("no config hash on the template")
	}
	update(t, cm, func(cm *corev1.ConfigMap) { cm.Data["unused"] = "b" })
	// A pass after the edit has run (touch waits for it): still the same
	// template.
	touch(t, ns, "files", passes, "after-unused-edit")
	if got := webDeployment(t, ns, "files").Spec.Template.Annotations[app.AnnotationConfigHash]; got != first {
		t.Fatalf("an unused key's edit changed the hash %s -> %s", first, got)
	}
	update(t, cm, func(cm *corev1.ConfigMap) { cm.Data["app.yaml"] = "v: 2" })
	var second string
	waitWeb(t, ns, "files", func(d *appsv1.Deployment, _ corev1.Container) error {
		if second = d.Spec.Template.Annotations[app.AnnotationConfigHash]; second == first {
			return fmt.Errorf("hash unchanged")
		}
		return nil
	})
	waitPods(t, ns, "files", "web", 2, second)
}

// TestRollbackRestoresARelease: each pod-shaping change records a
// release; annotating the App rolls back to one, as a new release; a
// release that is not kept is refused with a Warning Event.
func TestRollbackRestoresARelease(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	startApps(t, ns, nil, nil)
	testkit.Create(t, &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Name: "rel", Namespace: ns},
		Spec: appsv1alpha1.AppSpec{Image: "example/rel:1", Env: []corev1.EnvVar{{Name: "MODE", Value: "one"}},
			Processes: []appsv1alpha1.Process{{Name: "web"}}},
	})
	waitRelease(t, ns, "rel", 1)
	mutateApp(t, ns, "rel", func(a *appsv1alpha1.App) {
		a.Spec.Image = "example/rel:2"
		a.Spec.Env = []corev1.EnvVar{{Name: "MODE", Value: "two"}}
	})
	waitRelease(t, ns, "rel", 2)
	// Scale is not a release.
	mutateApp(t, ns, "rel", func(a *appsv1alpha1.App) { a.Spec.Processes[0].Replicas = new(int32(2)) })
	waitReady(t, ns, "rel", "2/2")
	if a := waitRelease(t, ns, "rel", 2); a.Status.Release != 2 {
		t.Fatalf("scaling made release %d", a.Status.Release)
	}

	annotate(t, ns, "rel", "1")
	a := waitRelease(t, ns, "rel", 3)
	switch {
	case a.Spec.Image != "example/rel:1" || a.Spec.Env[0].Value != "one":
		t.Errorf("rolled back spec: image %s env %v", a.Spec.Image, a.Spec.Env)
	case *a.Spec.Processes[0].Replicas != 2:
		t.Errorf("the rollback changed the scale to %d", *a.Spec.Processes[0].Replicas)
	case a.Annotations[app.AnnotationRollbackTo] != "":
		t.Errorf("annotation left: %v", a.Annotations)
	}
	waitWeb(t, ns, "rel", func(_ *appsv1.Deployment, c corev1.Container) error {
		if v, _ := envValue(c, "MODE"); c.Image != "example/rel:1" || v != "one" {
			return fmt.Errorf("image %s MODE %s", c.Image, v)
		}
		return nil
	})
	var revs appsv1.ControllerRevisionList
	if err := env.Client.List(t.Context(), &revs, client.InNamespace(ns), client.MatchingLabels{app.LabelApp: "rel"}); err != nil {
		t.Fatal(err)
	}
	if len(revs.Items) != 3 {
		t.Errorf("%d releases kept, want 3", len(revs.Items))
	}
	waitEvent(t, ns, "rel", app.ReasonRolledBack, "rolled back to release 1")

	annotate(t, ns, "rel", "99")
	waitEvent(t, ns, "rel", app.ReasonRollbackFailed, "cannot roll back to release 99: it is not kept (kept: ")
	testkit.Eventually(t, wait, func() error {
		got := &appsv1alpha1.App{}
		get(t, client.ObjectKey{Namespace: ns, Name: "rel"}, got)
		if _, ok := got.Annotations[app.AnnotationRollbackTo]; ok {
			return fmt.Errorf("annotation still there")
		}
		if got.Spec.Image != "example/rel:1" || got.Status.Release != 3 {
			return fmt.Errorf("a failed rollback changed the App: %s, release %d", got.Spec.Image, got.Status.Release)
		}
		return nil
	})
}

func annotate(t *testing.T, ns, name, release string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, app.AnnotationRollbackTo, release)
	if err := testkit.Env(t).Client.Patch(t.Context(), &appsv1alpha1.App{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
}

// waitRelease waits until the App's status, for its current generation,
// names release n.
func waitRelease(t *testing.T, ns, name string, n int64) *appsv1alpha1.App {
	t.Helper()
	a := &appsv1alpha1.App{}
	testkit.Eventually(t, wait, func() error {
		if err := testkit.Env(t).Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, a); err != nil {
			return err
		}
		if a.Status.ObservedGeneration != a.Generation || a.Status.Release != n {
			return fmt.Errorf("release %d at generation %d/%d, want %d", a.Status.Release, a.Status.ObservedGeneration, a.Generation, n)
		}
		return nil
	})
	return a
}

func waitEvent(t *testing.T, ns, name, reason, message string) {
	t.Helper()
	testkit.Eventually(t, wait, func() error {
		var events corev1.EventList
		if err := testkit.Env(t).Client.List(t.Context(), &events, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.InvolvedObject.Name == name && e.Reason == reason && strings.Contains(e.Message, message) {
				return nil
			}
		}
		return fmt.Errorf("no %s Event saying %q", reason, message)
	})
}

// TestScaleUpLeavesTheAppReady: pods an autoscaler adds that cannot start
// yet do not make the App unready while its floor is available.
func TestScaleUpLeavesTheAppReady(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	startApps(t, ns, nil, nil)
	// One pod per node, and the plane has two nodes: a third and fourth
	// pod stay Pending, as new pods of a scale-up are for a while.
	anti := &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
		TopologyKey: corev1.LabelHostname, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{app.LabelApp: "scaled"}}}}}}
	testkit.Create(t, &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Name: "scaled", Namespace: ns},
		Spec: appsv1alpha1.AppSpec{Image: "example/scaled:1", Pod: &appsv1alpha1.PodSettings{Affinity: anti},
			Processes: []appsv1alpha1.Process{{Name: "web", Autoscaling: &appsv1alpha1.Autoscaling{MinReplicas: 2, MaxReplicas: 4},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}},
	})
	waitReady(t, ns, "scaled", "2/2")
	// Scale as the autoscaler does, through the scale subresource.
	scale := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "scaled-web"}}
	if err := env.Client.SubResource("scale").Patch(t.Context(), scale, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"replicas":4}}`))); err != nil {
		t.Fatal(err)
	}
	a := &appsv1alpha1.App{}
	testkit.Eventually(t, wait, func() error {
		d := webDeployment(t, ns, "scaled")
		if d.Status.Replicas != 4 || d.Status.AvailableReplicas != 2 {
			return fmt.Errorf("deployment at %d pods, %d available", d.Status.Replicas, d.Status.AvailableReplicas)
		}
		get(t, client.ObjectKey{Namespace: ns, Name: "scaled"}, a)
		if a.Status.Replicas != "2/4" {
			return fmt.Errorf("App status %s, not the scaled-up one yet", a.Status.Replicas)
		}
		// Right after the scale the App may have seen the Deployment
		// before its controller did (observedGeneration behind), and is
		// rightly unready for that instant; with the two Pending pods
		// counted against it, it would stay unready.
		if c := meta.FindStatusCondition(a.Status.Conditions, app.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("a scale-up made the App unready: %+v", c)
		}
		return nil
	})
}

// TestAppWebhookChecksChildrenAndNames: at kubectl apply time the App
// webhook refuses an App whose Deployment the API server would refuse
// (with the server's own message), one whose children would take
// another App's names, and a worker probe with no port; a good App is
// still admitted.
func TestAppWebhookChecksChildrenAndNames(t *testing.T) {
	installCRDs(t)
	ns := testkit.Env(t).Namespace(t)
	op := newOperatorWith(t, ns, nil, func(o *operator.Options) {
		o.Name = "dayone-" + ns
		o.Webhooks = testkit.Webhooks(t)
	})
	if err := app.Setup(op); err != nil {
		t.Fatal(err)
	}
	testkit.StartOperator(t, op)
	c := testkit.Env(t).Client
	newApp := func(name string, procs ...appsv1alpha1.Process) *appsv1alpha1.App {
		return &appsv1alpha1.App{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: appsv1alpha1.AppSpec{Image: "example/app:1", Processes: procs}}
	}
	// Wait until the webhook answers: the refused App below is refused.
	bad := newApp("limits", appsv1alpha1.Process{Name: "web", Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
	}})
	testkit.Eventually(t, wait, func() error {
		err := c.Create(t.Context(), bad.DeepCopy(), client.DryRunAll)
		if err == nil {
			return fmt.Errorf("admitted")
		}
		if want := `spec.processes[web]: Deployment.apps "limits-web" is invalid`; !strings.Contains(err.Error(), want) ||
			!strings.Contains(err.Error(), "must be less than or equal to cpu limit") {
			return fmt.Errorf("message %q", err)
		}
		return nil
	})
	testkit.Create(t, newApp("shop", appsv1alpha1.Process{Name: "admin-web"}))
	err := c.Create(t.Context(), newApp("shop-admin", appsv1alpha1.Process{Name: "web"}))
	if err == nil || !strings.Contains(err.Error(), "spec.processes[web]: its Deployment shop-admin-web would have the name of App shop's process admin-web") {
		t.Errorf("collision: %v", err)
	}
	err = c.Create(t.Context(), newApp("probes", appsv1alpha1.Process{Name: "web"}, appsv1alpha1.Process{Name: "worker",
		Probes: &appsv1alpha1.Probes{Liveness: &appsv1alpha1.Probe{TCPSocket: &appsv1alpha1.TCPProbe{}}}}))
	if err == nil || !strings.Contains(err.Error(), "spec.processes[worker].probes.liveness: name a port") {
		t.Errorf("worker probe: %v", err)
	}
	if err := c.Create(t.Context(), newApp("shop-api", appsv1alpha1.Process{Name: "web"})); err != nil {
		t.Errorf("a good App was refused: %v", err)
	}
	// An update is checked too.
	err = c.Patch(t.Context(), newApp("shop-api"), client.RawPatch(types.JSONPatchType,
		[]byte(`[{"op":"add","path":"/spec/processes/0/resources","value":{"requests":{"memory":"2Gi"},"limits":{"memory":"1Gi"}}}]`)))
	if err == nil || !strings.Contains(err.Error(), "must be less than or equal to memory limit") {
		t.Errorf("update: %v", err)
	}
}
