package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/operators/app"
	"github.com/setpoint-dev/setpoint/testkit"
)

// TestAppsConvergeThroughControlPlaneRestarts (#17 item 2): kube-apiserver
// and etcd are SIGKILLed and started again in the middle of a churn of
// Apps (random edits, deletes, creates). The operator recovers with no
// restart of its own (its Run never returns), and after each fault every
// App converges to exactly its desired children, with none left over from
// a deleted one. make test: 2 API server restarts over 20 Apps; make
// chaos: 10 and 3 of etcd over 100 (SETPOINT_APISERVER_KILLS,
// SETPOINT_ETCD_KILLS, SETPOINT_CHURN_APPS).
func TestAppsConvergeThroughControlPlaneRestarts(t *testing.T) {
	env := testkit.Env(t)
	ns := env.Namespace(t)
	scratch := env.Namespace(t)
	apps := testkit.EnvCount(t, "SETPOINT_CHURN_APPS", 20)
	var faults []string
	for range testkit.EnvCount(t, "SETPOINT_APISERVER_KILLS", 2) {
		faults = append(faults, controlplane.KubeAPIServer)
	}
	// etcd only in make chaos: its first restart takes about 40 s to
	// converge (the API server's restarts 3-10 s).
	for range testkit.EnvCount(t, "SETPOINT_ETCD_KILLS", 0) {
		faults = append(faults, controlplane.Etcd)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 2))
	rnd.Shuffle(len(faults), func(i, j int) { faults[i], faults[j] = faults[j], faults[i] })

	installCRDs(t)
	op := newOperator(t, ns, nil)
	if err := app.Setup(op); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan error, 1)
	go func() { exited <- op.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	for i := range apps {
		testkit.Create(t, churnApp(ns, i))
	}
	waitAppsExact(t, ns, scratch)
	took := map[string][]time.Duration{}
	for _, f := range faults {
		// The fault lands at a random point of the churn (drawn first:
		// the churn owns rnd while it runs).
		delay := time.Duration(200+rnd.IntN(800)) * time.Millisecond
		stop := churnApps(t, ns, rnd, apps)
		t.Logf("restarting %s", f)
		<-time.After(delay)
		if err := env.ControlPlane.Restart(t.Context(), f); err != nil {
			t.Fatal(err)
		}
		up := time.Now()
		edits := stop()
		exact := waitAppsExact(t, ns, scratch).Sub(up)
		took[f] = append(took[f], exact)
		t.Logf("%s killed and back; %d churn steps; every App exact %s after it was ready", f, edits, exact.Round(10*time.Millisecond))
		select {
		case err := <-exited:
			t.Fatalf("the operator stopped after a restart of %s: %v", f, err)
		default:
		}
	}
	for _, f := range []string{controlplane.KubeAPIServer, controlplane.Etcd} {
		if len(took[f]) == 0 {
			continue
		}
		// Reaching here, every fault was survived with nothing lost,
		// left over or stuck: any of those fails the wait above.
		testkit.ReportChaos(t, testkit.ChaosRow{Fault: f + " SIGKILL and restart, under App churn", Injected: len(took[f]), Survived: len(took[f]), Reconverge: took[f]})
	}
}

func churnApp(ns string, i int) *appsv1alpha1.App {
	return &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("churn-%03d", i), Namespace: ns},
		Spec:       appsv1alpha1.AppSpec{Image: "example/shape:1", Processes: []appsv1alpha1.Process{{Name: "web"}}},
	}
}

// churnApps edits, deletes and creates Apps churn-000.. at random, as
// fast as the API server answers, until the function it returns is
// called; that returns how many steps were taken. Errors (the API server
// is down for part of it) are part of the churn and are not reported.
func churnApps(t *testing.T, ns string, rnd *rand.Rand, apps int) func() int {
	c := testkit.Env(t).Client
	return testkit.Churn(0, func(ctx context.Context) {
		a := churnApp(ns, rnd.IntN(apps))
		err := c.Get(ctx, client.ObjectKeyFromObject(a), a)
		switch {
		case apierrors.IsNotFound(err):
			_ = c.Create(ctx, a)
		case err != nil:
			<-time.After(100 * time.Millisecond) // the API server is down: do not spin
		case rnd.IntN(5) == 0:
			_ = c.Delete(ctx, a)
		default:
			randomEdit(rnd, a)
			_ = c.Update(ctx, a)
		}
	})
}

// waitAppsExact waits until every App in ns is handled for its
// generation and its children are exactly a fresh apply of its desired
// objects, no App is stuck Terminating and no child is left of an App
// that is gone. It returns when the check that passed began: with
// hundreds of Apps one check takes seconds (a dry-run apply of each
// child), which is the test's time, not the operator's.
func waitAppsExact(t *testing.T, ns, scratch string) time.Time {
	t.Helper()
	c := testkit.Env(t).Client
	var began time.Time
	testkit.EventuallyLogged(t, 2*wait, func() error {
		began = time.Now()
		var list appsv1alpha1.AppList
		if err := c.List(t.Context(), &list, client.InNamespace(ns)); err != nil {
			return err
		}
		live := map[string]bool{}
		names := map[string]string{}
		// The cheap checks of every App first, so a check that fails
		// fails fast.
		for _, a := range list.Items {
			live[string(a.UID)] = true
			names[a.Name] = string(a.UID)
			if a.DeletionTimestamp != nil {
				return fmt.Errorf("%s is Terminating", a.Name)
			}
			if a.Status.ObservedGeneration != a.Generation {
				return fmt.Errorf("%s: generation %d handled %d", a.Name, a.Generation, a.Status.ObservedGeneration)
			}
		}
		for _, o := range appChildren(t, ns, client.HasLabels{"setpoint.dev/owner-uid"}) {
			if owner := o.GetLabels()["setpoint.dev/owner-uid"]; o.GetDeletionTimestamp() == nil && !live[owner] {
				return fmt.Errorf("%s %s (made %s, owners %+v) is left of a deleted App (Apps now: %v)", o.kind, o.GetName(), o.GetCreationTimestamp(), o.GetOwnerReferences(), names)
			}
		}
		for i := range list.Items {
			if err := sameAsFreshApply(t, &list.Items[i], scratch); err != nil {
				return fmt.Errorf("%s: %w", list.Items[i].Name, err)
			}
		}
		return nil
	})
	return began
}
