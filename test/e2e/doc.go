// Package e2e holds end-to-end scenarios of the shipped operators on a
// full local control plane (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and kwok nodes): the examples a user applies first are
// applied here too, and what they promise is checked.
package e2e
