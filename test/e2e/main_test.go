package e2e

import (
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	celeryv1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	crdmanifests "github.com/setpoint-dev/setpoint/config/crd"
	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operator/crd"
	"github.com/setpoint-dev/setpoint/operators/app"
	"github.com/setpoint-dev/setpoint/testkit"
)

// wait bounds every condition the scenarios poll for.
const wait = 60 * time.Second

var scheme = testkit.NewScheme(appsv1alpha1.AddToScheme, celeryv1alpha1.AddToScheme)

func TestMain(m *testing.M) {
	os.Exit(testkit.Run(m, testkit.WithControlPlane(controlplane.Full(2)), testkit.WithScheme(scheme)))
}

var installed struct {
	sync.Mutex
	done bool
}

// installCRDs installs the shipped CRDs, once per run.
func installCRDs(t *testing.T) {
	t.Helper()
	installed.Lock()
	defer installed.Unlock()
	if installed.done {
		return
	}
	if err := crd.Install(t.Context(), testkit.Env(t).Config, time.Minute,
		crdmanifests.MustGet(appsv1alpha1.GroupVersion.Group, "apps"),
		crdmanifests.MustGet(celeryv1alpha1.GroupVersion.Group, "celeryclusters")); err != nil {
		t.Fatalf("install CRDs: %v", err)
	}
	installed.done = true
}

// startApps runs the App operator on ns, as `setpoint run` does, with its
// client config passed through wrap (nil: unchanged) and more handlers
// added by extra (nil: none).
func startApps(t *testing.T, ns string, wrap *testkit.WriteCounter, extra func(*operator.Operator)) {
	t.Helper()
	installCRDs(t)
	op := newOperator(t, ns, wrap)
	if err := app.Setup(op); err != nil {
		t.Fatal(err)
	}
	if extra != nil {
		extra(op)
	}
	testkit.StartOperator(t, op)
}

// newOperator is an operator as `setpoint run` makes it, serving ns,
// resyncing every second, with its client's writes counted by writes
// (nil: not counted).
func newOperator(t *testing.T, ns string, writes *testkit.WriteCounter) *operator.Operator {
	t.Helper()
	var cfg *rest.Config
	if writes != nil {
		cfg = writes.Wrap(testkit.Env(t).Config)
	}
	return newOperatorWith(t, ns, cfg, nil)
}

// newOperatorWith is newOperator with its client config cfg (nil: the
// test plane's) and its options changed by change.
func newOperatorWith(t *testing.T, ns string, cfg *rest.Config, change func(*operator.Options)) *operator.Operator {
	t.Helper()
	if cfg == nil {
		cfg = testkit.Env(t).Config
	}
	opts := operator.Options{
		Name: "setpoint", Scheme: scheme, Namespaces: []string{ns},
		MetricsAddr: "0", ProbeAddr: "0", SyncPeriod: time.Second,
		ConcealConfigValues: true,
	}
	if change != nil {
		change(&opts)
	}
	op, err := operator.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// applyFile applies every document of a YAML file into ns, the way
// `kubectl apply --server-side -n ns -f file` does.
func applyFile(t *testing.T, path, ns string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(data), "\n---") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		u.SetNamespace(ns)
		if err := testkit.Env(t).Client.Apply(t.Context(), client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("e2e"), client.ForceOwnership); err != nil {
			t.Fatalf("apply %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
}
