// Package certs makes a small private certificate authority and the
// certificates it signs, as PEM. The local control plane uses it for its
// API server and admin identity, and the operator library for the serving
// certificate of its admission webhooks: both need a CA that exists only
// for them, not a general PKI.
package certs
