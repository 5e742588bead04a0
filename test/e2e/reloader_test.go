package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/setpoint-dev/setpoint/operator/configdata"
	"github.com/setpoint-dev/setpoint/operators/reloader"
	"github.com/setpoint-dev/setpoint/testkit"
)

// startReloader runs the config reloader on ns, as `setpoint run` does,
// with its writes counted by writes (nil: not counted).
func startReloader(t *testing.T, ns string, writes *testkit.WriteCounter, opts reloader.Options) {
	t.Helper()
	op := newOperator(t, ns, writes)
	if err := reloader.Setup(op, opts); err != nil {
		t.Fatal(err)
	}
	testkit.StartOperator(t, op)
}

// pod is a one-container pod template with env and spec changed by edit.
func pod(edit func(*corev1.PodSpec)) corev1.PodTemplateSpec {
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}
	if edit != nil {
		edit(&spec)
	}
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}}, Spec: spec}
}

func deployment(ns, name string, ann map[string]string, edit func(*corev1.PodSpec)) *appsv1.Deployment {
	tmpl := pod(edit)
	tmpl.Labels = map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: ann},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: tmpl.Labels},
			Template: tmpl,
		},
	}
}

var auto = map[string]string{reloader.AnnotationAuto: "true"}

func configMap(ns, name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}
}

func secret(ns, name string, data map[string]string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}
}

// waitRecorded waits until the reloader has recorded its baseline on a
// workload, and returns the workload.
func waitRecorded[T client.Object](t *testing.T, obj T) T {
	t.Helper()
	testkit.Eventually(t, wait, func() error {
		if err := testkit.Env(t).Client.Get(t.Context(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		if _, ok := obj.GetAnnotations()[reloader.AnnotationHashes]; !ok {
			return fmt.Errorf("%s: no %s yet", obj.GetName(), reloader.AnnotationHashes)
		}
		return nil
	})
	return obj
}

// template reads a workload and returns its pod template.
func template(t *testing.T, obj client.Object) *corev1.PodTemplateSpec {
	t.Helper()
	get(t, client.ObjectKeyFromObject(obj), obj)
	switch w := obj.(type) {
	case *appsv1.Deployment:
		return &w.Spec.Template
	case *appsv1.StatefulSet:
		return &w.Spec.Template
	case *appsv1.DaemonSet:
		return &w.Spec.Template
	}
	t.Fatalf("not a workload: %T", obj)
	return nil
}

// waitRolled waits until the workload's pod template carries a config
// hash and returns it.
func waitRolled(t *testing.T, obj client.Object) string {
	t.Helper()
	var hash string
	testkit.Eventually(t, wait, func() error {
		hash = template(t, obj).Annotations[reloader.AnnotationConfigHash]
		if hash == "" {
			return fmt.Errorf("%s not rolled", obj.GetName())
		}
		return nil
	})
	return hash
}

func update[T client.Object](t *testing.T, obj T, change func(T)) {
	t.Helper()
	get(t, client.ObjectKeyFromObject(obj), obj)
	change(obj)
	if err := testkit.Env(t).Client.Update(t.Context(), obj); err != nil {
		t.Fatalf("update %s: %v", obj.GetName(), err)
	}
}

// TestReloaderRollsOnEachReferenceKind: env valueFrom, envFrom, volumes
// and projected volumes of Deployments, and a StatefulSet and a
// DaemonSet, are each rolled by a change of what they use, with an Event
// naming it. Opting in rolls nothing.
func TestReloaderRollsOnEachReferenceKind(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	startReloader(t, ns, nil, reloader.Options{})
	cms := map[string]*corev1.ConfigMap{}
	secrets := map[string]*corev1.Secret{}
	for _, name := range []string{"env", "volume", "sts", "ds"} {
		cms[name] = configMap(ns, "cm-"+name, map[string]string{"k": "1"})
		testkit.Create(t, cms[name])
	}
	for _, name := range []string{"envfrom", "projected"} {
		secrets[name] = secret(ns, "secret-"+name, map[string]string{"k": "1"})
		testkit.Create(t, secrets[name])
	}
	envFromCM := func(name string) func(*corev1.PodSpec) {
		return func(s *corev1.PodSpec) {
			s.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}}
		}
	}
	workloads := []struct {
		obj    client.Object
		change func()
		cause  string
	}{
		{deployment(ns, "env", auto, func(s *corev1.PodSpec) {
			s.Containers[0].Env = []corev1.EnvVar{{Name: "K", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "cm-env"}, Key: "k"}}}}
		}), func() { update(t, cms["env"], func(c *corev1.ConfigMap) { c.Data["k"] = "2" }) }, "ConfigMap cm-env"},
		{deployment(ns, "envfrom", auto, func(s *corev1.PodSpec) {
			s.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "secret-envfrom"}}}}
		}), func() {
			update(t, secrets["envfrom"], func(s *corev1.Secret) { s.StringData = map[string]string{"k": "2"} })
		}, "Secret secret-envfrom"},
		{deployment(ns, "volume", auto, func(s *corev1.PodSpec) {
			s.Volumes = []corev1.Volume{{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "cm-volume"}}}}}
			s.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "conf", MountPath: "/etc/conf"}}
		}), func() { update(t, cms["volume"], func(c *corev1.ConfigMap) { c.Data["new"] = "key" }) }, "ConfigMap cm-volume"},
		{deployment(ns, "projected", auto, func(s *corev1.PodSpec) {
			s.Volumes = []corev1.Volume{{Name: "all", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "secret-projected"}}}}}}}}
		}), func() {
			update(t, secrets["projected"], func(s *corev1.Secret) { s.StringData = map[string]string{"k": "2"} })
		}, "Secret secret-projected"},
		{&appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sts", Annotations: auto},
			Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}},
				Template: pod(envFromCM("cm-sts"))},
		}, func() { update(t, cms["sts"], func(c *corev1.ConfigMap) { c.Data["k"] = "2" }) }, "ConfigMap cm-sts"},
		{&appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ds", Annotations: auto},
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}},
				Template: pod(envFromCM("cm-ds"))},
		}, func() { update(t, cms["ds"], func(c *corev1.ConfigMap) { c.Data["k"] = "2" }) }, "ConfigMap cm-ds"},
	}
	for _, w := range workloads {
		testkit.Create(t, w.obj)
	}
	for _, w := range workloads {
		waitRecorded(t, w.obj)
		// (A Deployment's generation counts annotation changes too, so the
		// record bumps it; the pod template is what must stay as it was.)
		if h := template(t, w.obj).Annotations[reloader.AnnotationConfigHash]; h != "" {
			t.Errorf("%s: opting in changed the pod template (hash %q)", w.obj.GetName(), h)
		}
	}
	for _, w := range workloads {
		w.change()
	}
	for _, w := range workloads {
		waitRolled(t, w.obj)
		testkit.WaitEvent(t, w.obj, "Normal Reloaded: Rolled for a change in "+w.cause+" (strategy annotation).", wait)
	}
	// The Deployment's controller rolls the pods: a new ReplicaSet.
	testkit.Eventually(t, wait, func() error {
		var rs appsv1.ReplicaSetList
		if err := testkit.Env(t).Client.List(t.Context(), &rs, client.InNamespace(ns), client.MatchingLabels{"app": "env"}); err != nil {
			return err
		}
		if len(rs.Items) != 2 {
			return fmt.Errorf("%d ReplicaSets of env, want 2 after the roll", len(rs.Items))
		}
		return nil
	})
}

// TestReloaderDoesNotRoll: a metadata-only change, resyncs, a change of
// a key the workload does not use, a workload that did not opt in, a
// deleted ConfigMap, an object outside an explicit list and a bad
// strategy make no write to the workload. Each step is followed by a
// change that must roll, and the roll's Event must name only that one.
func TestReloaderDoesNotRoll(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	writes := &testkit.WriteCounter{}
	startReloader(t, ns, writes, reloader.Options{Quiet: -1})
	cfg := configMap(ns, "cfg", map[string]string{"used": "1", "unused": "1"})
	sync := configMap(ns, "sync", map[string]string{"n": "0"})
	other := configMap(ns, "other", map[string]string{"k": "1"})
	testkit.Create(t, cfg, sync, other)
	// watched (auto) uses the key "used" of cfg and all of sync; listed
	// uses other as well, but lists only cfg and sync.
	uses := func(others ...string) func(*corev1.PodSpec) {
		return func(s *corev1.PodSpec) {
			s.Containers[0].Env = []corev1.EnvVar{{Name: "USED", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "used"}}}}
			for _, name := range append([]string{"sync"}, others...) {
				s.Containers[0].EnvFrom = append(s.Containers[0].EnvFrom,
					corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}})
			}
		}
	}
	watched := deployment(ns, "watched", auto, uses())
	listed := deployment(ns, "listed", map[string]string{reloader.AnnotationConfigMaps: "cfg,sync"}, uses("other"))
	bystander := deployment(ns, "bystander", nil, uses("other"))
	bad := deployment(ns, "bad", map[string]string{reloader.AnnotationAuto: "true", reloader.AnnotationStrategy: "restart"}, uses("other"))
	testkit.Create(t, watched, listed, bystander, bad)
	// Deployments count every annotation change in their generation: from
	// the recorded state, each roll (one patch) adds one.
	recordedAt := map[string]int64{
		"watched": waitRecorded(t, watched).Generation,
		"listed":  waitRecorded(t, listed).Generation,
	}
	testkit.WaitEvent(t, bad, `unknown reload strategy "restart"`, wait)

	rolls := 0
	// step does what must not roll, then changes sync, which must roll
	// watched and listed once more, naming only sync.
	step := func(name string, noRoll func()) {
		t.Helper()
		noRoll()
		rolls++
		update(t, sync, func(c *corev1.ConfigMap) { c.Data["n"] = fmt.Sprint(rolls) })
		for _, w := range []*appsv1.Deployment{watched, listed} {
			testkit.Eventually(t, wait, func() error {
				get(t, client.ObjectKeyFromObject(w), w)
				if want := recordedAt[w.Name] + int64(rolls); w.Generation != want {
					return fmt.Errorf("after %s: %s at generation %d, want %d", name, w.Name, w.Generation, want)
				}
				return nil
			})
		}
	}
	step("a metadata-only change", func() {
		update(t, cfg, func(c *corev1.ConfigMap) { c.Labels = map[string]string{"touched": "yes"} })
	})
	step("a change of an unused key", func() {
		update(t, cfg, func(c *corev1.ConfigMap) { c.Data["unused"] = "2" })
	})
	step("a change of an object outside the explicit list", func() {
		update(t, other, func(c *corev1.ConfigMap) { c.Data["k"] = "2" })
	})
	step("a deletion", func() {
		if err := testkit.Env(t).Client.Delete(t.Context(), cfg); err != nil {
			t.Fatal(err)
		}
	})
	step("the same content created again", func() {
		testkit.Create(t, configMap(ns, "cfg", map[string]string{"used": "1", "unused": "2"}))
	})

	// Every roll named only sync. (Identical Events fold into one series,
	// so they are not counted: the generations above counted the rolls.)
	want := "Normal Reloaded: Rolled for a change in ConfigMap sync (strategy annotation)."
	for _, w := range []*appsv1.Deployment{watched, listed} {
		testkit.WaitEvent(t, w, want, wait)
		for _, e := range testkit.Events(t, w) {
			if strings.Contains(e, "Reloaded") && e != want {
				t.Errorf("%s: unexpected %q", w.Name, e)
			}
		}
	}

	// Every write went to watched or listed: one to record, one per roll.
	for _, w := range []*appsv1.Deployment{watched, listed, bystander, bad} {
		n := 0
		for _, p := range writes.Writes() {
			if strings.HasSuffix(p, "/deployments/"+w.Name) {
				n++
			}
		}
		want := 0
		if w == watched || w == listed {
			want = 1 + rolls
		}
		if n != want {
			t.Errorf("%d writes to %s, want %d (all writes: %v)", n, w.Name, want, writes.Writes())
		}
	}
	for _, w := range []*appsv1.Deployment{bystander, bad} {
		if g := template(t, w); w.Generation != 1 || g.Annotations[reloader.AnnotationConfigHash] != "" {
			t.Errorf("%s was written to: generation %d, template annotations %v", w.Name, w.Generation, g.Annotations)
		}
	}
}

// TestReloaderRollsABurstOnce: ten edits 100 ms apart roll once, to the
// last content.
func TestReloaderRollsABurstOnce(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	startReloader(t, ns, nil, reloader.Options{Quiet: 2 * time.Second})
	cfg := configMap(ns, "cfg", map[string]string{"n": "0"})
	testkit.Create(t, cfg)
	d := deployment(ns, "burst", auto, func(s *corev1.PodSpec) {
		s.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}
	})
	testkit.Create(t, d)
	recorded := waitRecorded(t, d).Generation
	tick := time.NewTicker(100 * time.Millisecond) // the burst's pace, not synchronisation
	defer tick.Stop()
	for i := 1; i <= 10; i++ {
		<-tick.C
		update(t, cfg, func(c *corev1.ConfigMap) { c.Data["n"] = fmt.Sprint(i) })
	}
	// The operator runs without a digest key: plain SHA-256, over the
	// digests of the values its cache holds.
	plain := configdata.Key(nil)
	final := reloader.Hashes{"ConfigMap/cfg": plain.Digest(plain.Values(map[string][]byte{"n": []byte("10")}), nil), reloader.KeyEntry: plain.Fingerprint()}
	// The roll to the last content is the last roll there can be: once it
	// is there, count.
	testkit.Eventually(t, wait, func() error {
		if h := template(t, d).Annotations[reloader.AnnotationConfigHash]; h != final.Combined() {
			return fmt.Errorf("config hash %q, want the last content's %q", h, final.Combined())
		}
		return nil
	})
	if d.Generation != recorded+1 {
		t.Errorf("generation %d after the burst, want %d: one roll", d.Generation, recorded+1)
	}
}

// TestReloaderEnvStrategy: the env strategy puts the digest into an env
// var of the containers that use the object, and nowhere else.
func TestReloaderEnvStrategy(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	startReloader(t, ns, nil, reloader.Options{Strategy: reloader.StrategyEnv, Quiet: -1})
	testkit.Create(t, secret(ns, "db", map[string]string{"password": "a", "user": "u"}))
	d := deployment(ns, "env", auto, func(s *corev1.PodSpec) {
		s.Containers[0].Env = []corev1.EnvVar{{Name: "PW", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}}}
		s.Containers = append(s.Containers, corev1.Container{Name: "sidecar", Image: "registry.example/sidecar:1"})
	})
	testkit.Create(t, d)
	waitRecorded(t, d)
	update(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"}}, func(s *corev1.Secret) {
		s.StringData = map[string]string{"password": "b"}
	})
	// Over the digests of the values the cache holds (no digest key).
	plain := configdata.Key(nil)
	want := plain.Digest(plain.Values(map[string][]byte{"password": []byte("b")}), []string{"password"})
	testkit.Eventually(t, wait, func() error {
		tmpl := template(t, d)
		app, sidecar := tmpl.Spec.Containers[0], tmpl.Spec.Containers[1]
		i := slices.IndexFunc(app.Env, func(e corev1.EnvVar) bool { return e.Name == "RELOADER_SECRET_DB" })
		if i < 0 {
			return fmt.Errorf("no RELOADER_SECRET_DB on app: %v", app.Env)
		}
		if app.Env[i].Value != want {
			return fmt.Errorf("RELOADER_SECRET_DB=%s, want %s", app.Env[i].Value, want)
		}
		if len(sidecar.Env) != 0 || tmpl.Annotations[reloader.AnnotationConfigHash] != "" {
			return fmt.Errorf("rolled beyond the user: sidecar env %v, annotations %v", sidecar.Env, tmpl.Annotations)
		}
		// The patch puts its var first and keeps the user's as they were.
		if len(app.Env) != 2 || !slices.ContainsFunc(app.Env, func(e corev1.EnvVar) bool {
			return e.Name == "PW" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef.Key == "password"
		}) {
			return fmt.Errorf("the user's env was changed: %v", app.Env)
		}
		return nil
	})
	testkit.WaitEvent(t, d, "Rolled for a change in Secret db (strategy env).", wait)
	for _, e := range testkit.Events(t, d) {
		if strings.Contains(e, "password") || strings.Contains(e, ": b") {
			t.Errorf("an Event shows secret data: %s", e)
		}
	}
}
