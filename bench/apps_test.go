package bench

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	crdmanifests "github.com/setpoint-dev/setpoint/config/crd"
	"github.com/setpoint-dev/setpoint/operator/crd"
	"github.com/setpoint-dev/setpoint/operators/app"
	"github.com/setpoint-dev/setpoint/testkit"
)

var (
	appsFlag    = flag.Int("apps", 1000, "how many Apps BenchmarkAppConvergence converges")
	resultsFlag = flag.String("results", "results", "directory for the JSON results (empty: do not write)")
)

// Client settings of both sides: high enough that neither is throttled
// on the client side (the local plane's own controllers run at the same).
const (
	clientQPS   = 1000
	clientBurst = 2000
	workers     = 8
)

// appConvergence is one run of BenchmarkAppConvergence.
type appConvergence struct {
	Apps    int    `json:"apps"`
	Machine string `json:"machine"`
	Client  string `json:"client"`

	// DirectSeconds: the benchmark creates each App's children itself and
	// waits until every Deployment is available: the limit on this machine.
	DirectSeconds   float64  `json:"directSeconds"`
	DirectAPIWrites counters `json:"directApiserverWrites"`
	DirectCPU       counters `json:"directCpuSeconds"`

	// SetpointSeconds: from the first App created to every App Ready.
	SetpointSeconds   float64  `json:"setpointSeconds"`
	Ratio             float64  `json:"ratio"`
	SetpointAPIWrites counters `json:"setpointApiserverWrites"`
	SetpointCPU       counters `json:"setpointCpuSeconds"`
	OperatorWrites    counters `json:"operatorWrites"`
	OperatorCPU       float64  `json:"operatorCpuSeconds"`
	OperatorPeakMiB   float64  `json:"operatorPeakRssMiB"`

	// ResyncWrites: a restarted operator passes over every converged App.
	ResyncPasses float64  `json:"resyncPasses"`
	ResyncWrites counters `json:"resyncWrites"`
}

// BenchmarkAppConvergence converges -apps Apps (one web process, one
// replica, a Service) with the App operator, and times the same children
// created directly, with the same client settings and concurrency.
func BenchmarkAppConvergence(b *testing.B) {
	env := testkit.Env(b)
	n := *appsFlag
	if err := crd.Install(b.Context(), env.Config, time.Minute, crdmanifests.MustGet(appsv1alpha1.GroupVersion.Group, "apps")); err != nil {
		b.Fatal(err)
	}
	for range b.N {
		r := appConvergence{
			Apps:    n,
			Machine: fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), memTotal()),
			Client:  fmt.Sprintf("QPS %d, burst %d, %d workers (both sides)", clientQPS, clientBurst, workers),
		}

		// The limit: the same children, created directly.
		ns := env.Namespace(b)
		waitQuiet(b)
		before, cpuBefore := apiserverRequests(b), planeCPU(b)
		start := time.Now()
		parallel(b, n, func(i int) error {
			a := benchApp(ns, i)
			for _, o := range []client.Object{app.Deployment(a, a.Spec.Processes[0], ""), app.Service(a)} {
				if err := env.Client.Create(b.Context(), o); err != nil {
					return err
				}
			}
			return nil
		})
		waitDeploymentsAvailable(b, ns, n)
		r.DirectSeconds = time.Since(start).Seconds()
		r.DirectAPIWrites = onlyWrites(apiserverRequests(b).minus(before))
		if os.Getenv("BENCH_BY_RESOURCE") != "" {
			b.Logf("all requests, direct phase: %v", map[string]float64(apiserverRequests(b).minus(before)))
		}
		r.DirectCPU = planeCPU(b).minus(cpuBefore)

		// The operator.
		ns = env.Namespace(b)
		op := startSetpoint(b, ns, clientQPS, clientBurst, workers)
		waitQuiet(b)
		opBefore := op.requests(b)
		before, cpuBefore = apiserverRequests(b), planeCPU(b)
		opCPUBefore, _ := op.usage(b)
		start = time.Now()
		if dir := os.Getenv("BENCH_PPROF"); dir != "" {
			go func() {
				raw, err := env.Clientset.Discovery().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", "12").DoRaw(b.Context())
				if err == nil {
					_ = os.WriteFile(filepath.Join(dir, "apiserver.pprof"), raw, 0o644)
				} else {
					b.Logf("pprof: %v", err)
				}
			}()
		}
		parallel(b, n, func(i int) error { return env.Client.Create(b.Context(), benchApp(ns, i)) })
		waitAppsReady(b, ns, n)
		r.SetpointSeconds = time.Since(start).Seconds()
		r.Ratio = r.SetpointSeconds / r.DirectSeconds
		r.SetpointAPIWrites = onlyWrites(apiserverRequests(b).minus(before))
		if os.Getenv("BENCH_BY_RESOURCE") != "" {
			b.Logf("all requests, setpoint phase: %v", map[string]float64(apiserverRequests(b).minus(before)))
		}
		r.SetpointCPU = planeCPU(b).minus(cpuBefore)
		r.OperatorWrites = onlyWrites(op.requests(b).minus(opBefore))
		r.OperatorCPU, r.OperatorPeakMiB = op.usage(b)
		r.OperatorCPU -= opCPUBefore
		r.SetpointCPU["setpoint"] = r.OperatorCPU
		op.stop()

		// A full resync with nothing changed: a new operator process lists
		// everything and passes over every App once.
		op = startSetpoint(b, ns, clientQPS, clientBurst, workers)
		opBefore = op.requests(b)
		testkit.Eventually(b, 5*time.Minute, func() error {
			if got := op.reconciles(b, "setpoint-app.apps.setpoint.dev"); got < float64(n) {
				return fmt.Errorf("%.0f of %d Apps passed over", got, n)
			}
			return nil
		})
		r.ResyncPasses = op.reconciles(b, "setpoint-app.apps.setpoint.dev")
		r.ResyncWrites = onlyWrites(op.requests(b).minus(opBefore))
		op.stop()
		if w := r.ResyncWrites.writes(); w != 0 {
			b.Errorf("a resync with nothing changed wrote %v", r.ResyncWrites)
		}

		b.ReportMetric(r.DirectSeconds, "direct-s")
		b.ReportMetric(r.SetpointSeconds, "setpoint-s")
		b.ReportMetric(r.Ratio, "ratio")
		b.ReportMetric(r.OperatorWrites.writes()/float64(n), "op-writes/app")
		b.ReportMetric(r.OperatorPeakMiB, "op-peak-MiB")
		b.ReportMetric(r.ResyncWrites.writes(), "resync-writes")
		report(b, r)
	}
}

func benchApp(ns string, i int) *appsv1alpha1.App {
	return &appsv1alpha1.App{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%04d", i), Namespace: ns},
		Spec: appsv1alpha1.AppSpec{
			Image:     "example/bench:1",
			Port:      8080,
			Processes: []appsv1alpha1.Process{{Name: "web", Replicas: new(int32(1))}},
		},
	}
}

// parallel runs fn(0..n-1) on the shared number of workers.
func parallel(b *testing.B, n int, fn func(i int) error) {
	b.Helper()
	next := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

const pollEvery = 250 * time.Millisecond

func waitDeploymentsAvailable(b *testing.B, ns string, n int) {
	b.Helper()
	waitCount(b, n, func() (int, error) {
		var list appsv1.DeploymentList
		if err := testkit.Env(b).Client.List(b.Context(), &list, client.InNamespace(ns)); err != nil {
			return 0, err
		}
		ready := 0
		for _, d := range list.Items {
			s := d.Status
			if s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == 1 && s.AvailableReplicas == 1 && s.ReadyReplicas == 1 {
				ready++
			}
		}
		return ready, nil
	})
}

func waitAppsReady(b *testing.B, ns string, n int) {
	b.Helper()
	waitCount(b, n, func() (int, error) {
		var list appsv1alpha1.AppList
		if err := testkit.Env(b).Client.List(b.Context(), &list, client.InNamespace(ns)); err != nil {
			return 0, err
		}
		ready := 0
		for _, a := range list.Items {
			if c := meta.FindStatusCondition(a.Status.Conditions, app.ConditionReady); c != nil && c.Status == metav1.ConditionTrue && a.Status.ObservedGeneration == a.Generation {
				ready++
			}
		}
		return ready, nil
	})
}

// waitCount polls count until it reaches n; polling costs the same LIST
// in both phases.
func waitCount(b *testing.B, n int, count func() (int, error)) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		got, err := count()
		if err == nil && got >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d ready after 10 minutes (last error: %v)", got, n, err)
		}
		time.Sleep(pollEvery) // a poll interval, not synchronisation: the loop checks the condition
	}
}

func onlyWrites(c counters) counters {
	out := counters{}
	for verb, v := range c {
		if (counters{verb: v}).writes() != 0 {
			out[verb] = v
		}
	}
	return out
}

func memTotal() string {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "memory unknown"
	}
	var kb float64
	_, _ = fmt.Sscanf(string(data), "MemTotal: %f kB", &kb)
	return fmt.Sprintf("%.0f GiB", kb/1024/1024)
}

// report prints the run as a table and writes it as JSON.
func report(b *testing.B, r appConvergence) {
	b.Logf(`App convergence, %d Apps (%s; client %s)
  %-44s %10.1f s
  %-44s %10.1f s   (ratio %.2f, goal <= 1.15)
  %-44s %s
  %-44s %s
  %-44s %s
  %-44s %s
  %-44s %s
  %-44s %10.1f s
  %-44s %10.0f MiB
  %-44s %10.0f      (%.0f passes)`,
		r.Apps, r.Machine, r.Client,
		"direct creation of the children, to available", r.DirectSeconds,
		"Setpoint, Apps created to all Ready", r.SetpointSeconds, r.Ratio,
		"API server writes, direct phase (all clients)", r.DirectAPIWrites,
		"API server writes, Setpoint phase (all clients)", r.SetpointAPIWrites,
		"operator's own writes", r.OperatorWrites,
		"CPU seconds, direct phase", r.DirectCPU.cpu(),
		"CPU seconds, Setpoint phase", r.SetpointCPU.cpu(),
		"operator CPU", r.OperatorCPU,
		"operator peak RSS", r.OperatorPeakMiB,
		"writes of a full resync, nothing changed", r.ResyncWrites.writes(), r.ResyncPasses)
	if *resultsFlag == "" {
		return
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(*resultsFlag, 0o755); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(*resultsFlag, fmt.Sprintf("app-convergence-%d.json", r.Apps))
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		b.Fatal(err)
	}
}
