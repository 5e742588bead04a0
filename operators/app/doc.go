// Package app is the App operator: one App resource (apps.setpoint.dev)
// becomes a Deployment per process, a Service and an Ingress for the web
// process, a HorizontalPodAutoscaler per autoscaled process and a
// PodDisruptionBudget per process that can have more than one pod.
//
// It is level-triggered and uses only the library's public API: the
// builders in this package are pure functions from the App (and the
// content hash of the ConfigMaps and Secrets it references) to the
// desired children; operator.Kind.Children applies and prunes them, and
// Status computes the App's status from what it observed. A change in a
// referenced ConfigMap or Secret wakes the App through an index and
// changes the hash in the pod template, so Kubernetes rolls the pods.
package app
