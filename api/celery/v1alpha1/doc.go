// Package v1alpha1 holds the CeleryCluster resource
// (celery.setpoint.dev/v1alpha1): Celery worker pools that scale on the
// length of their queues, with optional beat and Flower, which the
// CeleryCluster operator turns into Deployments and a Service.
//
// Validation lives here, as kubebuilder markers and CEL rules, so bad
// input is refused by the API server with a clear message before the
// operator ever sees it. `make generate` turns these types into the CRD
// under config/crd/bases and into zz_generated.deepcopy.go.
//
// +kubebuilder:object:generate=true
// +groupName=celery.setpoint.dev
package v1alpha1
