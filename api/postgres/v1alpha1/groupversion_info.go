package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the PostgresCluster API's group and version.
	GroupVersion = schema.GroupVersion{Group: "postgres.setpoint.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the PostgresCluster types.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the PostgresCluster types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func init() {
	SchemeBuilder.Register(&PostgresCluster{}, &PostgresClusterList{})
}
