// Package celery is the CeleryCluster operator: one CeleryCluster
// (celery.setpoint.dev) becomes a worker Deployment per pool, scaled on
// the backlog of the pool's queues, and optionally a beat Deployment and
// Flower's Deployment and Service.
//
// The builders in this package are pure functions from the
// CeleryCluster (and, for workers, the replica count the autoscaler
// chose) to the desired children. The broker URL reaches pods only
// through a secretKeyRef, never as text in a pod spec. Backlogs come from
// broker/, scaling decisions from autoscale/.
package celery
