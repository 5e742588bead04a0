package e2e

import (
	"math/rand/v2"
	"os/exec"
	"testing"
	"time"

	"github.com/setpoint-dev/setpoint/testkit"
)

// TestSetpointRunSIGKILLs (#17 item 1 as written): two replicas of
// `setpoint run --leader-elect --operators app`, the binary users run,
// under a supervisor that starts each again the moment it dies; during a
// churn of Apps (random edits, deletes, creates) one replica at random is
// SIGKILLed at random moments. At the end every App is handled for its
// generation, its children equal a fresh apply of its desired objects,
// no child is left of a deleted App and nothing is stuck Terminating.
// make test: 6 kills over 30 Apps; make chaos: SETPOINT_RUN_KILLS=100,
// SETPOINT_KILL_APPS=500. (TestOperatorSIGKILLs in operator/ checks the
// handlers' side: none lost, none run twice.)
func TestSetpointRunSIGKILLs(t *testing.T) {
	env := testkit.Env(t)
	ns, scratch := env.Namespace(t), env.Namespace(t)
	kills := testkit.EnvCount(t, "SETPOINT_RUN_KILLS", 6)
	apps := testkit.EnvCount(t, "SETPOINT_KILL_APPS", 30)
	bin, err := testkit.SetpointBinary()
	if err != nil {
		t.Fatal(err)
	}
	installCRDs(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 5))
	s := testkit.Supervise(t, 2, func(int) *exec.Cmd {
		return exec.Command(bin, "run", "--kubeconfig", env.ControlPlane.KubeconfigPath,
			"--namespace", ns, "--operators", "app", "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
			"--leader-elect", "--leader-election-namespace", ns,
			// Short timings, so 100 kills fit in make chaos.
			"--leader-elect-lease-duration", "3s", "--leader-elect-renew-deadline", "2s", "--leader-elect-retry-period", "500ms")
	}, t.TempDir())
	for i := range apps {
		testkit.Create(t, churnApp(ns, i))
	}
	stop := churnApps(t, ns, rand.New(rand.NewPCG(seed, 6)), apps)
	s.KillRandomly(rnd, kills)
	steps := stop()
	last := time.Now()
	took := waitAppsExact(t, ns, scratch).Sub(last)
	t.Logf("%d kills, %d churn steps; every App exact %s after the last kill", kills, steps, took.Round(10*time.Millisecond))
	// Reaching here, nothing was lost, left over or stuck: any of those
	// fails the wait above.
	testkit.ReportChaos(t, testkit.ChaosRow{Fault: "setpoint run SIGKILL (2 replicas, leader election) under App churn", Injected: kills, Survived: kills, Reconverge: []time.Duration{took}})
}
