package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the App API's group and version.
	GroupVersion = schema.GroupVersion{Group: "apps.setpoint.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the App types.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the App types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func init() {
	SchemeBuilder.Register(&App{}, &AppList{})
}
