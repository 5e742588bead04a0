package controlplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Names of the binaries the control plane runs.
const (
	Etcd              = "etcd"
	KubeAPIServer     = "kube-apiserver"
	ControllerManager = "kube-controller-manager"
	Scheduler         = "kube-scheduler"
	Kwok              = "kwok"
	// processNodes names the log of a rootless plane's process nodes.
	processNodes = "process-nodes"
)

// PostgresAgent is the PostgreSQL agent's binary, beside setpoint's as in
// Setpoint's image; process nodes bind it into their pods.
const PostgresAgent = "setpoint-postgres-agent"

// KwokStagesFile is the kwok Stage configuration that `make tools` writes
// next to the kwok binary, taken from the pinned kwok module so that stages
// and binary always match.
const KwokStagesFile = "kwok-stages.yaml"

// ErrMissingBinary is wrapped by FindBinary when a binary is not found.
var ErrMissingBinary = errors.New("control plane binary not found (run `make tools`)")

// FindBinary returns the path of a control plane binary (or of
// KwokStagesFile). It looks, in order, in $SETPOINT_ASSETS; in
// $KUBEBUILDER_ASSETS for etcd and kube-apiserver, so an existing envtest
// setup keeps working; next to the running executable (bin/setpoint sits
// beside the tools); and in the bin/ directory of the enclosing Setpoint
// checkout, found by walking up from the working directory.
func FindBinary(name string) (string, error) {
	var dirs []string
	if d := os.Getenv("SETPOINT_ASSETS"); d != "" {
		dirs = append(dirs, d)
	}
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" && (name == Etcd || name == KubeAPIServer) {
		dirs = append(dirs, d)
	}
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe))
	}
	if root, ok := checkoutRoot(); ok {
		dirs = append(dirs, filepath.Join(root, "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w; looked in %s", name, ErrMissingBinary, strings.Join(dirs, ", "))
}

// checkoutRoot finds the directory of Setpoint's go.mod above the working
// directory, so that tests run from any package directory find bin/.
func checkoutRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module github.com/setpoint-dev/setpoint\n") {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}
