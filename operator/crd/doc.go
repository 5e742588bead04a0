// Package crd installs CustomResourceDefinitions and waits until the API
// server serves them.
//
// `setpoint dev`, the test kit and an operator that manages its own CRDs
// all need the same two steps: apply the definitions (server-side apply, so
// re-installing a changed CRD updates it and an unchanged one is a no-op
// for etcd) and wait for the Established condition, because a custom
// resource created before that is refused.
package crd
