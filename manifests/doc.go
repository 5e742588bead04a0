// Package manifests makes the install YAML of an operator built with
// Setpoint from its code: CRDs from the Go types and ClusterRoles from the
// +kubebuilder:rbac markers (both by controller-tools, the library behind
// controller-gen, so they match what `make generate` and `make manifests`
// write), the permissions the library itself needs, a ServiceAccount with
// its bindings, and a hardened manager Deployment. `setpoint generate`
// prints it; Kopf had "YAML from code" on its roadmap.
package manifests
