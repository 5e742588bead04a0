package postgres

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	postgresv1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
	crdmanifests "github.com/setpoint-dev/setpoint/config/crd"
	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operator/crd"
	pgop "github.com/setpoint-dev/setpoint/operators/postgres"
	"github.com/setpoint-dev/setpoint/testkit"
)

var scheme = testkit.NewScheme(postgresv1alpha1.AddToScheme)

func TestMain(m *testing.M) {
	opts := controlplane.Full(1)
	opts.ProcessNodes = 3
	// A restarted container comes back at once, as a kubelet's first
	// restart does; the agent's own recovery is what is under test.
	opts.RestartBackoff = time.Second
	os.Exit(testkit.Run(m, testkit.WithControlPlane(opts), testkit.WithScheme(scheme)))
}

// setup makes a namespace whose pods run on the process nodes, installs
// the CRD and runs the operator for it.
func setup(t testing.TB) string {
	ns, _ := setupWithStop(t)
	return ns
}

// setupWithStop is setup that also returns how to stop the operator.
func setupWithStop(t testing.TB) (string, func() error) {
	t.Helper()
	env := testkit.Env(t)
	if err := crd.Install(t.Context(), env.Config, time.Minute,
		crdmanifests.MustGet(postgresv1alpha1.GroupVersion.Group, "postgresclusters")); err != nil {
		t.Fatalf("install CRDs: %v", err)
	}
	name := env.ProcessNamespace(t)
	op, err := operator.New(env.Config, operator.Options{Name: "setpoint-" + name, Scheme: scheme, Namespaces: []string{name},
		MetricsAddr: "0", ProbeAddr: "0", ConcealConfigValues: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := pgop.Setup(op, pgop.Options{AgentImage: "ghcr.io/setpoint-dev/setpoint:dev"}); err != nil {
		t.Fatal(err)
	}
	stop := testkit.StartOperator(t, op)
	t.Cleanup(func() {
		if t.Failed() {
			dump(t, name)
		}
	})
	// psql runs in a client pod, where the Services resolve.
	client := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "client", Namespace: name}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "psql", Image: "postgres:15", Command: []string{"sleep", "infinity"}}}}}
	testkit.Create(t, client)
	return name, stop
}

func cluster(ns, name string, instances int32) *postgresv1alpha1.PostgresCluster {
	return &postgresv1alpha1.PostgresCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: postgresv1alpha1.PostgresClusterSpec{Instances: instances}}
}

func get(t testing.TB, ns, name string) *postgresv1alpha1.PostgresCluster {
	t.Helper()
	c := &postgresv1alpha1.PostgresCluster{}
	if err := testkit.Env(t).Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, c); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitHealthy waits for every instance to be ready under one primary.
func waitHealthy(t testing.TB, ns, name string, timeout time.Duration) *postgresv1alpha1.PostgresCluster {
	t.Helper()
	var c *postgresv1alpha1.PostgresCluster
	testkit.Eventually(t, timeout, func() error {
		c = get(t, ns, name)
		ready := meta.FindStatusCondition(c.Status.Conditions, pgop.ConditionReady)
		if c.Status.Phase != pgop.PhaseHealthy || ready == nil || ready.Status != metav1.ConditionTrue {
			return fmt.Errorf("phase %q, ready %s, instances %+v", c.Status.Phase, c.Status.ReadyInstances, c.Status.Instances)
		}
		return nil
	})
	return c
}

// psql runs SQL in the client pod against host (a Service or a pod's
// address) as the application owner, and returns its unaligned output.
func psql(t testing.TB, ns, cluster, host, sql string) (string, error) {
	t.Helper()
	password := appPassword(t, ns, cluster)
	script := `exec "$(ls /usr/lib/postgresql/*/bin/psql | tail -n 1)" -X -q -A -t -v ON_ERROR_STOP=1 "$1" -c "$2"`
	conn := fmt.Sprintf("host=%s user=app dbname=app connect_timeout=3 password=%s", host, password)
	out, err := testkit.Kubectl(t, "", "-n", ns, "exec", "client", "--", "sh", "-c", script, "psql", conn, sql)
	return strings.TrimSpace(out), err
}

func mustPsql(t testing.TB, ns, cluster, host, sql string) string {
	t.Helper()
	var out string
	testkit.Eventually(t, time.Minute, func() error {
		var err error
		out, err = psql(t, ns, cluster, host, sql)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	return out
}

func dump(t testing.TB, ns string) {
	for _, args := range [][]string{
		{"get", "pods,pvc,services,leases,postgresclusters", "-o", "wide"},
		{"get", "events", "--sort-by=.lastTimestamp"},
		{"logs", "-l", pgop.LabelCluster, "-c", "postgres", "--tail=40", "--prefix"},
		{"get", "postgresclusters", "-o", "yaml"},
	} {
		out, _ := testkit.Kubectl(t, "", append([]string{"-n", ns}, args...)...)
		t.Logf("kubectl %v:\n%s", args, out)
	}
}

// followStatus reads cluster pg every interval in its own goroutine (a
// psql or exec that hangs must not delay what is seen) and hands each
// copy to seen, until the returned function is called. A read that fails
// (the API server frozen) is skipped.
func followStatus(t testing.TB, ns string, every time.Duration, seen func(*postgresv1alpha1.PostgresCluster)) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if c, err := getQuietly(t, ns, "pg"); err == nil {
				seen(c)
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// getQuietly reads cluster name, for a goroutine (no t.Fatal), giving up
// after 2 s.
func getQuietly(t testing.TB, ns, name string) (*postgresv1alpha1.PostgresCluster, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c := &postgresv1alpha1.PostgresCluster{}
	return c, testkit.Env(t).Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, c)
}
