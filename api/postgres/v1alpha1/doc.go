// Package v1alpha1 holds the PostgresCluster resource
// (postgres.setpoint.dev/v1alpha1): a PostgreSQL primary with streaming
// replicas, each instance a Pod and a PersistentVolumeClaim run by an
// agent (`setpoint postgres-agent`), and Services that follow the roles.
//
// Validation lives here, as kubebuilder markers and CEL rules, so bad
// input is refused by the API server with a message naming the field.
//
// +kubebuilder:object:generate=true
// +groupName=postgres.setpoint.dev
package v1alpha1
