package operator

import (
	"reflect"
	"testing"

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
				if got := obj.GetManagedFields(); !reflect.DeepEqual(got, tt.want) {
					t.Errorf("%T managedFields = %+v, want %+v", obj, got, tt.want)
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
