// Package processnode runs chosen pods of a local control plane as real
// host processes, so that software with state (PostgreSQL, Celery workers)
// can be tested for real without Docker or a VM.
//
// A process node is a Node labelled and tainted ProcessNodeLabel; a pod that
// tolerates the taint and selects the label is scheduled there and this
// package does what a kubelet would:
//
//   - A sandbox per pod: one process holding new mount, network, UTS and IPC
//     namespaces. Its root is an overlay of the host's / whose writes land in
//     a tmpfs, so volumes appear at their mountPath without touching the host
//     file system, and the pod's own writes vanish with it as in a container.
//   - Containers are host programs started inside the sandbox (nsenter);
//     the image is not pulled. Env, volumes, init containers, restart policy
//     with back-off, probes, preStop hooks and graceful termination follow
//     the kubelet's rules closely enough for operators to be tested on them.
//   - Networking: every pod has its own address on a bridge inside the
//     plane's own network namespace, which private addresses never leave.
//     A service proxy in that namespace serves every ClusterIP Service
//     (and `kubernetes` on the host's API server), and a DNS server answers
//     cluster names.
//   - The kubelet API (logs, exec, port-forward) is served on loopback for
//     the API server, with the streaming code of Kubernetes itself
//     (k8s.io/cri-streaming).
//   - A provisioner binds PersistentVolumeClaims of the default StorageClass
//     setpoint-local to directories under the plane's state directory.
//
// It needs root (as CI runs); Check says exactly what is missing elsewhere.
// It is a development tool, not an isolation boundary: a pod sees the
// host's files read-only through its overlay and runs as root unless its
// securityContext says otherwise.
package processnode
