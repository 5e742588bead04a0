package operator

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// Kubernetes' own kinds are cached typed, other kinds (a custom
// resource's Go type, a kind the scheme does not know) unstructured.
func TestCacheForms(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	custom := schema.GroupVersionKind{Group: "example.dev", Version: "v1", Kind: "Thing"}
	scheme.AddKnownTypeWithName(custom, &unstructured.Unstructured{})
	op := &Operator{opts: Options{Scheme: scheme}}
	for _, tc := range []struct {
		gvk   schema.GroupVersionKind
		typed bool
	}{
		{appsv1.SchemeGroupVersion.WithKind("Deployment"), true},
		{schema.GroupVersionKind{Version: "v1", Kind: "Secret"}, true},
		{custom, false},
		{schema.GroupVersionKind{Group: "example.dev", Version: "v1", Kind: "Unknown"}, false},
	} {
		obj, list := op.newCached(tc.gvk), op.newCachedList(tc.gvk)
		_, isU := obj.(*unstructured.Unstructured)
		_, isUL := list.(*unstructured.UnstructuredList)
		if isU == tc.typed || isUL == tc.typed {
			t.Errorf("%s: object %T, list %T; want typed %v", tc.gvk.Kind, obj, list, tc.typed)
		}
		if obj.GetObjectKind().GroupVersionKind() != tc.gvk {
			t.Errorf("%s: the empty object has kind %v", tc.gvk.Kind, obj.GetObjectKind().GroupVersionKind())
		}
	}
}

// copyInto gives the reader a copy in the form it asks for, never the
// cached object itself.
func TestCopyInto(t *testing.T) {
	gvk := appsv1.SchemeGroupVersion.WithKind("Deployment")
	cached := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "d", Labels: map[string]string{"a": "1"}}}
	typed := &appsv1.Deployment{}
	if err := copyInto(cached, typed, gvk); err != nil {
		t.Fatal(err)
	}
	typed.Labels["a"] = "changed"
	if cached.Labels["a"] != "1" || typed.Kind != "Deployment" {
		t.Errorf("typed copy shares the cached labels or lacks its kind: %v, %q", cached.Labels, typed.Kind)
	}
	u := &unstructured.Unstructured{}
	if err := copyInto(cached, u, gvk); err != nil {
		t.Fatal(err)
	}
	if u.GetName() != "d" || u.GetKind() != "Deployment" {
		t.Errorf("unstructured copy: %v", u.Object)
	}
	back := &appsv1.Deployment{}
	if err := copyInto(u, back, gvk); err != nil || back.Labels["a"] != "1" {
		t.Errorf("decoded from unstructured: %v, %v", back.Labels, err)
	}
	if err := copyInto(cached, &appsv1.StatefulSet{}, gvk); err == nil {
		t.Error("a Deployment was read into a StatefulSet")
	}
}

// A typed object's own apply entry keeps its field set as FieldsV1's
// JSON text, which appliedFields parses; text that does not parse is an
// empty set (the child is applied again).
func TestTypedAppliedFields(t *testing.T) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{ManagedFields: []metav1.ManagedFieldsEntry{
		{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:status":{}}`)}},
		{Manager: "op", Operation: metav1.ManagedFieldsOperationApply, FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:replicas":{}}}`)}},
	}}}
	got := appliedFields(d, "op")
	if !ownsPath(got, []string{"spec", "replicas"}) || ownsPath(got, []string{"status"}) {
		t.Errorf("field set %v", got)
	}
	if appliedFields(d, "other") != nil {
		t.Error("a manager with no apply entry has a field set")
	}
	d.ManagedFields[1].FieldsV1.Raw = []byte(`{not json`)
	if got := appliedFields(d, "op"); got == nil || len(got) != 0 {
		t.Errorf("bad text gave %v; want an empty set", got)
	}
}
