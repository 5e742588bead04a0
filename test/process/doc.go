// Package process holds end-to-end scenarios whose pods really run, on
// the process nodes of a local control plane: the shipped operators run
// in a pod of their own (`setpoint run` from Setpoint's image), their
// children's pods run the real programs (Celery workers, redis-server).
package process
