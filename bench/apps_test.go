package bench

import (
	"context"
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
	"k8s.io/apimachinery/pkg/watch"
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
	DirectAPIWrites counters `json:"directApiserverWrites"` // by verb and resource
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
		profile(b, "direct")
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
		r.DirectCPU = planeCPU(b).minus(cpuBefore)

		// The operator.
		ns = env.Namespace(b)
		op := startSetpoint(b, ns, clientQPS, clientBurst, workers)
		waitQuiet(b)
		opBefore := op.requests(b)
		before, cpuBefore = apiserverRequests(b), planeCPU(b)
		opCPUBefore, _ := op.usage(b)
		start = time.Now()
		profile(b, "setpoint")
		op.profile(b)
		parallel(b, n, func(i int) error { return env.Client.Create(b.Context(), benchApp(ns, i)) })
		waitAppsReady(b, ns, n)
		r.SetpointSeconds = time.Since(start).Seconds()
		r.Ratio = r.SetpointSeconds / r.DirectSeconds
		r.SetpointAPIWrites = onlyWrites(apiserverRequests(b).minus(before))
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

func waitDeploymentsAvailable(b *testing.B, ns string, n int) {
	b.Helper()
	waitAll(b, ns, n, &appsv1.DeploymentList{}, func(o client.Object) bool {
		d := o.(*appsv1.Deployment)
		s := d.Status
		return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == 1 && s.AvailableReplicas == 1 && s.ReadyReplicas == 1
	})
}

func waitAppsReady(b *testing.B, ns string, n int) {
	b.Helper()
	waitAll(b, ns, n, &appsv1alpha1.AppList{}, func(o client.Object) bool {
		a := o.(*appsv1alpha1.App)
		c := meta.FindStatusCondition(a.Status.Conditions, app.ConditionReady)
		return c != nil && c.Status == metav1.ConditionTrue && a.Status.ObservedGeneration == a.Generation
	})
}

// waitAll watches the objects of list's kind in ns until n of them are
// ready. A watch, not a polled LIST: the harness then costs the API
// server the same little in both phases, however many objects there are.
func waitAll(b *testing.B, ns string, n int, list client.ObjectList, ready func(client.Object) bool) {
	b.Helper()
	wc, err := client.NewWithWatch(testkit.Env(b).Config, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	state := map[string]bool{}
	count := func() int {
		c := 0
		for _, r := range state {
			if r {
				c++
			}
		}
		return c
	}
	for {
		w, err := wc.Watch(ctx, list, client.InNamespace(ns))
		if err != nil {
			b.Fatalf("watch: %v (%d of %d ready)", err, count(), n)
		}
		for ev := range w.ResultChan() {
			o, ok := ev.Object.(client.Object)
			if !ok {
				continue
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				state[o.GetName()] = ready(o)
			case watch.Deleted:
				delete(state, o.GetName())
			}
			if count() >= n {
				w.Stop()
				return
			}
		}
		// The server ended the watch: start again (the first events
		// replay every object).
		w.Stop()
		if ctx.Err() != nil {
			b.Fatalf("%d of %d ready after 10 minutes", count(), n)
		}
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

// profile takes a CPU profile of the API server over the next seconds
// into $BENCH_PPROF/apiserver-<phase>.pprof, when that is set (the plane
// then runs with --profiling).
func profile(b *testing.B, phase string) {
	dir := os.Getenv("BENCH_PPROF")
	if dir == "" {
		return
	}
	rc := testkit.Env(b).Clientset.Discovery().RESTClient()
	go func() {
		raw, err := rc.Get().AbsPath("/debug/pprof/profile").Param("seconds", "8").DoRaw(context.Background())
		if err != nil {
			fmt.Fprintf(os.Stderr, "pprof: %v\n", err)
			return
		}
		_ = os.WriteFile(filepath.Join(dir, "apiserver-"+phase+".pprof"), raw, 0o644)
	}()
}

// profile takes a CPU profile of the operator into
// $BENCH_PPROF/setpoint.pprof, when that is set.
func (p *operatorProcess) profile(b *testing.B) {
	dir := os.Getenv("BENCH_PPROF")
	if dir == "" {
		return
	}
	go func() {
		body, err := testkit.HTTPGet(p.pprof + "profile?seconds=8")
		if err != nil {
			fmt.Fprintf(os.Stderr, "pprof: %v\n", err)
			return
		}
		_ = os.WriteFile(filepath.Join(dir, "setpoint.pprof"), []byte(body), 0o644)
	}()
}
