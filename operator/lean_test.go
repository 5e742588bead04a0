package operator

import (
	"reflect"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
)

func TestLean(t *testing.T) {
	own := metav1.ManagedFieldsEntry{Manager: "op", Operation: metav1.ManagedFieldsOperationApply, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{}}`)}}
	tests := []struct {
		name    string
		fields  []metav1.ManagedFieldsEntry
		ann     map[string]string
		want    []metav1.ManagedFieldsEntry
		wantAnn map[string]string
	}{
		{"nothing to drop", nil, map[string]string{"a": "b"}, nil, map[string]string{"a": "b"}},
		{"own apply kept, others dropped",
			[]metav1.ManagedFieldsEntry{
				{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, Subresource: "status"},
				own,
				{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply},
			}, nil, []metav1.ManagedFieldsEntry{own}, nil},
		{"own status apply and own update dropped",
			[]metav1.ManagedFieldsEntry{
				{Manager: "op", Operation: metav1.ManagedFieldsOperationApply, Subresource: "status"},
				{Manager: "op", Operation: metav1.ManagedFieldsOperationUpdate},
			}, nil, nil, nil},
		{"last-applied dropped, other annotations kept", nil,
			map[string]string{lastApplied: `{"big":"copy"}`, "a": "b"}, nil, map[string]string{"a": "b"}},
	}
	op := &Operator{opts: Options{Name: "op"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A Service: ConfigMaps and Secrets are also concealed (configdata).
			typed := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "x", ManagedFields: tt.fields, Annotations: tt.ann}}
			m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(typed.DeepCopy())
			if err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{Object: m}
			for _, obj := range []metav1.Object{typed, u} {
				if _, err := op.lean(obj); err != nil {
					t.Fatal(err)
				}
				want := tt.want
				if _, ok := obj.(*unstructured.Unstructured); ok {
					// The field set is kept compact, read by appliedFields.
					want = withoutFieldSets(tt.want)
				}
				if got := obj.GetManagedFields(); !reflect.DeepEqual(got, want) {
					t.Errorf("%T managedFields = %+v, want %+v", obj, got, want)
				}
				if got := obj.GetAnnotations(); len(got) != len(tt.wantAnn) || (len(got) > 0 && !reflect.DeepEqual(got, tt.wantAnn)) {
					t.Errorf("%T annotations = %v, want %v", obj, got, tt.wantAnn)
				}
			}
		})
	}
	// A tombstone passes through untouched.
	tomb := cache.DeletedFinalStateUnknown{Key: "ns/x"}
	if got, err := op.lean(tomb); err != nil || got != tomb {
		t.Errorf("lean(tombstone) = %v, %v", got, err)
	}
}

func withoutFieldSets(entries []metav1.ManagedFieldsEntry) []metav1.ManagedFieldsEntry {
	var out []metav1.ManagedFieldsEntry
	for _, e := range entries {
		e.FieldsV1 = nil
		out = append(out, e)
	}
	return out
}

// TestLeanFieldSet: the own apply's field set, kept as text in the cache,
// reads back as the set the API server sent, however many times the
// transform ran; text that does not parse reads as an empty set (so the
// child is applied again, never taken as up to date).
func TestLeanFieldSet(t *testing.T) {
	fields := `{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:ports":{"k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{}}}}}`
	entry := metav1.ManagedFieldsEntry{Manager: "op", Operation: metav1.ManagedFieldsOperationApply, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(fields)}}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "x", ManagedFields: []metav1.ManagedFieldsEntry{entry}}})
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	want := appliedFields(u, "op")
	if len(want) != 2 {
		t.Fatalf("field set before the transform = %v", want)
	}
	op := &Operator{opts: Options{Name: "op"}}
	for range 2 {
		if _, err := op.lean(u); err != nil {
			t.Fatal(err)
		}
	}
	if got := appliedFields(u, "op"); !reflect.DeepEqual(got, want) {
		t.Errorf("field set after the transform = %v, want %v", got, want)
	}
	if _, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "metadata", "managedFields"); !ok {
		t.Fatal("own apply entry dropped")
	}
	entries := u.Object["metadata"].(map[string]any)["managedFields"].([]any)
	if _, ok := entries[0].(map[string]any)["fieldsV1"]; ok {
		t.Error("the decoded field set is still kept")
	}
	entries[0].(map[string]any)[compactFieldsKey] = "{not json"
	if got := appliedFields(u, "op"); got == nil || len(got) != 0 {
		t.Errorf("field set from bad text = %v, want empty", got)
	}
}

// TestLeanSharesKeys: two objects decoded apart hold one copy of each key.
func TestLeanSharesKeys(t *testing.T) {
	decode := func() map[string]any {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON([]byte(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"x"},"spec":{"ports":[{"port":80,"targetPort":8080}]}}`)); err != nil {
			t.Fatal(err)
		}
		leanUnstructured(u.Object, "op")
		return u.Object
	}
	a, b := decode(), decode()
	keyOf := func(m any, name string) *byte {
		for k := range m.(map[string]any) {
			if k == name {
				return unsafe.StringData(k)
			}
		}
		t.Fatalf("no key %q", name)
		return nil
	}
	portA := a["spec"].(map[string]any)["ports"].([]any)[0]
	portB := b["spec"].(map[string]any)["ports"].([]any)[0]
	if keyOf(a, "metadata") != keyOf(b, "metadata") || keyOf(portA, "targetPort") != keyOf(portB, "targetPort") {
		t.Error("keys of two objects are separate copies")
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("interning changed the object: %v", a)
	}
}
