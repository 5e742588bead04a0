// Package controlplane starts and stops a real, local Kubernetes control
// plane made of the upstream binaries: etcd, kube-apiserver and, on request,
// kube-controller-manager, kube-scheduler and kwok with simulated nodes.
//
// It exists so that tests, benchmarks and `setpoint dev` exercise the same
// API server, admission chain, garbage collector and controllers that a real
// cluster runs, rather than a fake. The binaries are built by `make tools`
// into bin/ (see FindBinary for the search order).
//
// Invariants:
//   - Every process listens on loopback only, on ports chosen free at start.
//   - Stop ends exactly the processes this ControlPlane started (each runs in
//     its own process group) and removes the directories it created; a
//     caller-provided Dir is kept so that cluster state survives a restart.
//   - A process that exits while the control plane is meant to be running is
//     reported through Err with the tail of its log, never as a silent hang.
package controlplane
