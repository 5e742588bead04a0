// Package rollout sums up the Deployments an object owns into its status:
// ready and desired pods, what is still rolling out, what cannot make
// progress, and the standard Ready, Progressing and Degraded conditions
// with observedGeneration. Operators whose status follows their children
// (the App, the CeleryCluster) share it, so they report alike.
package rollout
