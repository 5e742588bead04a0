package operator

import (
	"errors"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestTooLarge(t *testing.T) {
	gk := schema.GroupKind{Group: "test.setpoint.dev", Kind: "Widget"}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"annotations over 256 KiB", apierrors.NewInvalid(gk, "w", field.ErrorList{field.TooLong(field.NewPath("metadata", "annotations"), "", 256<<10)}), true},
		{"etcd's request limit", apierrors.NewInternalError(errors.New("etcdserver: request is too large")), true},
		{"request body", apierrors.NewRequestEntityTooLargeError("limit is 3145728"), true},
		{"another invalid field", apierrors.NewInvalid(gk, "w", field.ErrorList{field.TooLong(field.NewPath("spec", "name"), "", 63)}), false},
		{"conflict", apierrors.NewConflict(schema.GroupResource{Resource: "widgets"}, "w", errors.New("modified")), false},
		{"none", nil, false},
	}
	for _, tc := range tests {
		if got := tooLarge(tc.err); got != tc.want {
			t.Errorf("%s: tooLarge = %v", tc.name, got)
		}
	}
}
