// Package postgres is the PostgresCluster operator: it decides, and the
// agent in each instance pod (package agent) acts.
//
// For each cluster it makes a Pod and a PersistentVolumeClaim per
// instance (<name>-1 ... <name>-N), the Services <name>-rw, <name>-ro and
// <name>-r, the Secrets of the superuser, the application owner and the
// replication role, the agents' ServiceAccount and Role, and a
// PodDisruptionBudget once there is more than one instance. Pods, not a
// StatefulSet: a StatefulSet updates pods by ordinal, not by role, so it
// would restart the primary whenever its turn comes; it cannot delete one
// chosen instance (only the highest ordinal) and its pod-management rules
// would hold a replacement back behind a failed lower ordinal. Each
// instance's pod and claim share its name, so a pod deleted for any reason
// comes back on the same data.
//
// A daemon per cluster reads each agent's /status through the API
// server's pod proxy every second and decides: who is primary
// (status.targetPrimary, which the agents act on), failover after
// spec.failoverDelay, switchover on request; the status and the role
// labels of the pods (which the Services select) follow what the agents
// report.
package postgres
