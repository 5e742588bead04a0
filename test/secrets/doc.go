// Package secrets holds the canary test of secret hygiene: Secrets with
// canary values of every shape are read by every operator along every
// path (admission, status, Events, logs at the highest verbosity,
// metrics), and the canaries must appear nowhere, the API server's audit
// log included. It has a control plane of its own because that plane
// writes an audit log.
package secrets
