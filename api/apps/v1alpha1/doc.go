// Package v1alpha1 holds the App resource (apps.setpoint.dev/v1alpha1):
// one image run as Procfile-like processes, which the App operator turns
// into Deployments, a Service, an Ingress, autoscalers and disruption
// budgets.
//
// Validation lives here, as kubebuilder markers and CEL rules, so bad
// input is refused by the API server with a clear message before the
// operator ever sees it. `make generate` turns these types into the CRD
// under config/crd/bases and into zz_generated.deepcopy.go.
//
// +kubebuilder:object:generate=true
// +groupName=apps.setpoint.dev
package v1alpha1
