package bench

import (
	"flag"
	"os"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/testkit"
)

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, appsv1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

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
