package secrets

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	celeryv1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/testkit"
)

var scheme = testkit.NewScheme(appsv1alpha1.AddToScheme, celeryv1alpha1.AddToScheme)

// auditLog is the API server's audit log of this package's plane.
var auditLog string

// auditPolicy logs request and response bodies of everything the
// operators write or answer (their kinds, workloads, Events, admission
// denials), and only metadata for Secrets: the test's own creation of
// the canaries is not what it looks for.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  resources: [{group: "", resources: [secrets]}]
- level: None
  resources: [{group: coordination.k8s.io}, {group: "", resources: [nodes, nodes/status]}]
- level: RequestResponse
`

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "setpoint-audit-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	auditLog = filepath.Join(dir, "audit.log")
	opts := controlplane.Full(1)
	opts.APIServerArgs = []string{"--audit-policy-file=" + policy, "--audit-log-path=" + auditLog, "--audit-log-format=json"}
	return testkit.Run(m, testkit.WithControlPlane(opts), testkit.WithScheme(scheme))
}
