// Package reloader is the config reloader: Deployments, StatefulSets and
// DaemonSets that opt in are rolled when the content of a ConfigMap or
// Secret they use changes.
//
// A workload opts in with reloader.setpoint.dev/auto: "true" (every
// ConfigMap and Secret its pod template references through env valueFrom,
// envFrom, volumes and projected volumes) or with explicit lists,
// reloader.setpoint.dev/configmaps: a,b and reloader.setpoint.dev/secrets:
// c. The roll is a content hash written into the pod template (an
// annotation, or with the env strategy an env var on the containers that
// use the object), so Kubernetes' own rolling update does the rest.
//
// It is level-triggered (operator.Kind.Reconcile): each pass digests what
// the workload uses now and compares it with the digests recorded on the
// workload's own metadata (reloader.setpoint.dev/hashes), which the first
// sight records without rolling. Only keys the workload uses count when
// it references single keys through valueFrom or volume items; a deleted
// ConfigMap or Secret keeps its last digest, so deletion never rolls. A
// change waits until the configuration has been quiet for a short window,
// so a burst of edits rolls once. ConfigMaps and Secrets find their
// workloads through an operator.Index, never a list call.
//
// The pure parts (what a pod spec references, digests, the decision and
// the patch) are in refs.go, digest.go and roll.go, tested without a
// cluster; reloader.go wires them into the library.
package reloader
