// Package agent is the PostgreSQL instance manager that runs as PID 1 of
// each instance pod (`setpoint-postgres-agent run`, a binary of its own):
// it makes the data directory (initdb, or pg_basebackup from the primary),
// runs postgres as its child, and acts on what the operator decides in
// the cluster's status (status.targetPrimary): promote, demote, rewind,
// re-clone.
//
// Two rules keep a cluster from having two primaries. An instance runs as
// primary only while it holds the cluster's primary Lease
// (<cluster>-primary, coordination.k8s.io), taken with client-go's leader
// election; when it cannot renew the Lease within the renew deadline it
// stops postgres at once (immediate stop, never smart, which would let
// open sessions keep committing). And an instance that is not the target
// primary never runs as one: it stops fast, releases the Lease, rewinds
// onto the new primary's timeline (or clones again) and follows it.
//
// The agent serves /healthz, /readyz and /status on its HTTP port; the
// operator reads /status through the API server's pod proxy.
package agent
