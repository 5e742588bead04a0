package manifests

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func only(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	var found *unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			if found != nil {
				t.Fatalf("two %s %s", kind, name)
			}
			found = u
		}
	}
	if found == nil {
		t.Fatalf("no %s %s", kind, name)
	}
	return found
}

func readYAML(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Read(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// Generate makes the same CRD and ClusterRole from the App operator's
// code as `make generate` and `make manifests` committed, plus the
// library's base roles bound to the operator's account.
func TestGenerateMatchesMakeManifests(t *testing.T) {
	objs, err := Generate(Options{Name: "setpoint-app", Namespace: "ops", Image: "example/app:1",
		Paths: []string{"../api/apps/...", "../operators/app/..."}})
	if err != nil {
		t.Fatal(err)
	}
	wantRole := readYAML(t, "../config/operators/app/role.yaml")[0]
	gotRole := only(t, objs, "ClusterRole", "setpoint-app")
	if !reflect.DeepEqual(gotRole.Object["rules"], wantRole.Object["rules"]) {
		t.Errorf("ClusterRole rules differ from config/operators/app/role.yaml:\n got %v\nwant %v", gotRole.Object["rules"], wantRole.Object["rules"])
	}
	wantCRD := readYAML(t, "../config/crd/bases/apps.setpoint.dev_apps.yaml")[0]
	gotCRD := only(t, objs, "CustomResourceDefinition", "apps.apps.setpoint.dev")
	if !reflect.DeepEqual(gotCRD.Object["spec"], wantCRD.Object["spec"]) {
		t.Error("CRD spec differs from config/crd/bases/apps.setpoint.dev_apps.yaml")
	}
	base := only(t, objs, "Role", "setpoint-app-base")
	if base.GetNamespace() != "ops" {
		t.Errorf("base Role in %q, want ops", base.GetNamespace())
	}
	for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
		b := only(t, objs, kind, "setpoint-app-base")
		subjects := b.Object["subjects"].([]any)
		s := subjects[0].(map[string]any)
		if s["name"] != "setpoint-app" || s["namespace"] != "ops" {
			t.Errorf("%s subjects %v, want the ServiceAccount ops/setpoint-app", kind, subjects)
		}
	}
	only(t, objs, "ClusterRoleBinding", "setpoint-app")
	only(t, objs, "ServiceAccount", "setpoint-app")
	if objs[0].GetKind() != "Namespace" || objs[1].GetKind() != "CustomResourceDefinition" {
		t.Errorf("first objects %s, %s: want the Namespace, then CRDs", objs[0].GetKind(), objs[1].GetKind())
	}

	var b bytes.Buffer
	if err := Write(&b, objs); err != nil {
		t.Fatal(err)
	}
	again, err := Read(&b)
	if err != nil || len(again) != len(objs) {
		t.Errorf("the YAML stream reads back as %d objects (%v), want %d", len(again), err, len(objs))
	}
}

// TestGenerateScopedToNamespaces: with WatchNamespaces, the operator's
// rules and the library's Events rule are Roles in each watched
// namespace; only the cluster-scoped rules (SubjectAccessReviews, its
// webhook configurations, by name) stay a ClusterRole.
func TestGenerateScopedToNamespaces(t *testing.T) {
	objs, err := Generate(Options{Name: "setpoint-app", Namespace: "ops", Image: "example/app:1", WebhookPort: 9443,
		Paths: []string{"../api/apps/...", "../operators/app/..."}, WatchNamespaces: []string{"team-a", "ops"}})
	if err != nil {
		t.Fatal(err)
	}
	want := readYAML(t, "../config/operators/app/role.yaml")[0].Object["rules"]
	for _, ns := range []string{"team-a", "ops"} {
		var role *unstructured.Unstructured
		for _, u := range objs {
			if u.GetKind() == "Role" && u.GetName() == "setpoint-app-namespaced" && u.GetNamespace() == ns {
				role = u
			}
		}
		if role == nil || !reflect.DeepEqual(role.Object["rules"], want) {
			t.Errorf("Role setpoint-app-namespaced in %s: %v", ns, role)
		}
		found := false
		for _, u := range objs {
			found = found || (u.GetKind() == "RoleBinding" && u.GetName() == "setpoint-app-base-namespaced" && u.GetNamespace() == ns)
		}
		if !found {
			t.Errorf("no binding of the library's Events Role in %s", ns)
		}
	}
	for _, u := range objs {
		if u.GetKind() != "ClusterRole" {
			continue
		}
		if u.GetName() != "setpoint-app-base" {
			t.Errorf("ClusterRole %s with WatchNamespaces", u.GetName())
		}
		rules, _, _ := unstructured.NestedSlice(u.Object, "rules")
		for _, r := range rules {
			if !onClusterScoped(r) {
				t.Errorf("ClusterRole %s keeps a namespaced rule %v", u.GetName(), r)
			}
			if names, ok := r.(map[string]any)["resourceNames"]; ok && !reflect.DeepEqual(names, []any{"setpoint-app"}) {
				t.Errorf("rule on the operator's own objects names %v", names)
			}
		}
	}
	only(t, objs, "ValidatingWebhookConfiguration", "setpoint-app")
}

func TestGenerateRefusesWhatItCannotMake(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Image: "x"}, "an operator name is needed"},
		{Options{Name: "x"}, "an image is needed"},
		{Options{Name: "x", Image: "x", Paths: []string{"./does-not-exist"}}, "does-not-exist"},
	} {
		if _, err := Generate(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Generate(%+v) = %v, want an error saying %q", tc.o, err, tc.want)
		}
	}
}

func TestDeploymentIsHardened(t *testing.T) {
	d := Deployment(Options{Name: "op", Namespace: "ns", Image: "img", Replicas: 2, MetricsPort: 8080, ProbePort: 8081, WebhookPort: 9443})
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	for _, ch := range []struct {
		what string
		ok   bool
	}{
		{"replicas", *d.Spec.Replicas == 2},
		{"service account", pod.ServiceAccountName == "op"},
		{"non-root", *pod.SecurityContext.RunAsNonRoot},
		{"read-only root", *c.SecurityContext.ReadOnlyRootFilesystem},
		{"no escalation", !*c.SecurityContext.AllowPrivilegeEscalation},
		{"capabilities dropped", len(c.SecurityContext.Capabilities.Drop) == 1 && c.SecurityContext.Capabilities.Drop[0] == "ALL"},
		{"memory limit", !c.Resources.Limits.Memory().IsZero()},
		{"readiness", c.ReadinessProbe.HTTPGet.Path == "/readyz"},
		{"liveness", c.LivenessProbe.HTTPGet.Path == "/healthz"},
		{"webhook port", len(c.Ports) == 3 && c.Ports[2].ContainerPort == 9443},
	} {
		if !ch.ok {
			t.Errorf("Deployment: %s", ch.what)
		}
	}
}
