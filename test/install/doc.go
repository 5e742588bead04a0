// Package install tests the install story on a local control plane: the
// YAML of config/ (kustomize) and charts/setpoint (Helm) applies cleanly,
// and the operators run as the ServiceAccount it makes can do all they
// need and nothing on a list of what they must not.
package install
