package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the CeleryCluster API's group and version.
	GroupVersion = schema.GroupVersion{Group: "celery.setpoint.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the CeleryCluster types.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the CeleryCluster types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func init() {
	SchemeBuilder.Register(&CeleryCluster{}, &CeleryClusterList{})
}
