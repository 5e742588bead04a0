package bench

import (
	"flag"
	"os"
	"testing"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	celeryv1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/testkit"
)

var scheme = testkit.NewScheme(appsv1alpha1.AddToScheme, celeryv1alpha1.AddToScheme)

func TestMain(m *testing.M) {
	// The package has only benchmarks: `go test ./...` without -bench
	// need not start a control plane.
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		os.Exit(m.Run())
	}
	opts := controlplane.Full(2)
	if os.Getenv("BENCH_PPROF") != "" {
		opts.APIServerArgs = []string{"--profiling=true"}
	}
	os.Exit(testkit.Run(m, testkit.WithControlPlane(opts), testkit.WithScheme(scheme)))
}
