// Package postgres tests the PostgresCluster operator and its agents on a
// control plane with process nodes: real postgres processes (Debian's,
// from make deps), streaming replication, failover, rejoin and
// switchover, checked with psql through the cluster's Services.
package postgres
