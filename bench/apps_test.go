package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	crdmanifests "github.com/setpoint-dev/setpoint/config/crd"
	"github.com/setpoint-dev/setpoint/operator/crd"
	"github.com/setpoint-dev/setpoint/operators/app"
	"github.com/setpoint-dev/setpoint/testkit"
)

var (
	sizesFlag   = flag.String("apps", "100,1000", "comma-separated numbers of Apps BenchmarkApps converges, one sub-benchmark each")
	churnFlag   = flag.Duration("churn", 40*time.Second, "how long each side's churn phase lasts (10% of the Apps changed per minute)")
	resultsFlag = flag.String("results", "results", "directory for the JSON results (empty: do not write)")
)

// Client settings of every side: high enough that none is throttled on
// the client side (the local plane's own controllers run at the same).
const (
	clientQPS   = 1000
	clientBurst = 2000
	workers     = 8
)

// side is an implementation of the App operator under test.
type side struct {
	Name       string
	binary     string
	args       []string
	controller string // its controller's name in controller_runtime_reconcile_total
}

// The baseline runs first, so Setpoint is measured on the (slightly)
// fuller cluster.
var sides = []side{
	{Name: "baseline", binary: "setpoint-baseline", controller: "app"},
	{Name: "setpoint", binary: "setpoint", args: []string{"run", "--log-level", "error", "--operators", "app"}, controller: "setpoint-app.apps.setpoint.dev"},
}

// phase is what one side measured.
type phase struct {
	// ConvergeSeconds: from the first App created to every App Ready.
	ConvergeSeconds float64  `json:"convergeSeconds"`
	APIWrites       counters `json:"apiserverWrites"` // by verb and resource, all clients, during convergence
	CPU             counters `json:"cpuSeconds"`      // by process, during convergence
	OperatorWrites  counters `json:"operatorWrites"`  // the operator's own, during convergence
	// Churn: latency from an App's spec change to its Deployment showing it.
	ChurnSamples   int     `json:"churnSamples"`
	ChurnP50Millis float64 `json:"churnP50Millis"`
	ChurnP99Millis float64 `json:"churnP99Millis"`
	// The operator process over convergence and churn.
	OperatorCPU     float64 `json:"operatorCpuSeconds"`
	OperatorPeakMiB float64 `json:"operatorPeakRssMiB"`
	// A restarted operator passing over every converged App.
	ResyncPasses float64  `json:"resyncPasses"`
	ResyncWrites counters `json:"resyncWrites"`
}

// appsRun is one size's run of BenchmarkApps.
type appsRun struct {
	Apps    int    `json:"apps"`
	Machine string `json:"machine"`
	Client  string `json:"client"`
	// Direct: the benchmark creates each App's children itself and waits
	// until every Deployment is available: the limit on this machine.
	DirectSeconds   float64          `json:"directSeconds"`
	DirectAPIWrites counters         `json:"directApiserverWrites"`
	DirectCPU       counters         `json:"directCpuSeconds"`
	Sides           map[string]phase `json:"sides"`
}

// BenchmarkApps converges N Apps (one web process, one replica, a
// Service) with the App operator written on Setpoint and with the same
// operator written as a plain controller-runtime reconciler
// (bench/baseline), on the same control plane, and times the same
// children created directly.
func BenchmarkApps(b *testing.B) {
	env := testkit.Env(b)
	if err := crd.Install(b.Context(), env.Config, time.Minute, crdmanifests.MustGet(appsv1alpha1.GroupVersion.Group, "apps")); err != nil {
		b.Fatal(err)
	}
	for _, field := range strings.Split(*sizesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || n <= 0 {
			b.Fatalf("-apps: %q is not a positive number", field)
		}
		b.Run(fmt.Sprintf("apps=%d", n), func(b *testing.B) {
			for range b.N {
				r := runApps(b, n)
				b.ReportMetric(r.DirectSeconds, "direct-s")
				for _, sd := range sides {
					b.ReportMetric(r.Sides[sd.Name].ConvergeSeconds, sd.Name+"-s")
				}
				report(b, r)
			}
		})
	}
}

func runApps(b *testing.B, n int) appsRun {
	env := testkit.Env(b)
	r := appsRun{
		Apps:    n,
		Machine: fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), memTotal()),
		Client:  fmt.Sprintf("QPS %d, burst %d, %d workers (every side)", clientQPS, clientBurst, workers),
		Sides:   map[string]phase{},
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

	for _, sd := range sides {
		r.Sides[sd.Name] = runSide(b, sd, n)
	}
	return r
}

func runSide(b *testing.B, sd side, n int) phase {
	env := testkit.Env(b)
	var ph phase
	ns := env.Namespace(b)
	op := startOperator(b, sd.binary, sd.args, ns, clientQPS, clientBurst, workers)
	waitQuiet(b)
	opBefore := op.requests(b)
	before, cpuBefore := apiserverRequests(b), planeCPU(b)
	start := time.Now()
	profile(b, sd.Name)
	op.profile(b, sd.Name)
	parallel(b, n, func(i int) error { return env.Client.Create(b.Context(), benchApp(ns, i)) })
	waitAppsReady(b, ns, n)
	ph.ConvergeSeconds = time.Since(start).Seconds()
	op.heap(b, sd.Name)
	ph.APIWrites = onlyWrites(apiserverRequests(b).minus(before))
	ph.CPU = planeCPU(b).minus(cpuBefore)
	ph.OperatorWrites = onlyWrites(op.requests(b).minus(opBefore))
	cpu, _ := op.usage(b)
	ph.CPU[sd.Name] = cpu // the process started just before: nearly all of it is convergence

	ph.ChurnSamples, ph.ChurnP50Millis, ph.ChurnP99Millis = churn(b, ns, n, *churnFlag)
	ph.OperatorCPU, ph.OperatorPeakMiB = op.usage(b)
	op.stop()

	// A full resync with nothing changed: a new process lists everything
	// and passes over every App once.
	op = startOperator(b, sd.binary, sd.args, ns, clientQPS, clientBurst, workers)
	before = apiserverRequests(b)
	testkit.Eventually(b, 5*time.Minute, func() error {
		if got := op.reconciles(b, sd.controller); got < float64(n) {
			return fmt.Errorf("%.0f of %d Apps passed over", got, n)
		}
		return nil
	})
	ph.ResyncPasses = op.reconciles(b, sd.controller)
	ph.ResyncWrites = objectWrites(apiserverRequests(b).minus(before))
	op.stop()
	if w := ph.ResyncWrites.writes(); w != 0 {
		b.Errorf("%s: a resync with nothing changed wrote %v", sd.Name, ph.ResyncWrites)
	}
	return ph
}

// churn changes 10% of the Apps per minute for d (an env var of the App,
// one App at a time, round robin) and measures, through a watch of the
// Deployments, how long each change takes to reach its Deployment. It
// returns the number of samples and the p50 and p99 in milliseconds.
func churn(b *testing.B, ns string, n int, d time.Duration) (int, float64, float64) {
	b.Helper()
	env := testkit.Env(b)
	interval := time.Duration(float64(time.Minute) / (float64(n) / 10))
	t := trackDeployments(b, ns, func(dep *appsv1.Deployment) (string, string) {
		for _, c := range dep.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if e.Name == "CHURN" {
					return dep.Labels[app.LabelApp], e.Value
				}
			}
		}
		return "", ""
	})
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		name := benchApp(ns, i%n).Name
		value := strconv.Itoa(i)
		patch := fmt.Sprintf(`{"spec":{"env":[{"name":"CHURN","value":%q}]}}`, value)
		t.sent(name, value)
		a := &appsv1alpha1.App{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if err := env.Client.Patch(b.Context(), a, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			b.Fatal(err)
		}
		time.Sleep(interval) // the churn rate itself, not synchronisation
	}
	latencies := t.wait(b, time.Minute)
	return len(latencies), percentile(latencies, 0.50), percentile(latencies, 0.99)
}

// percentile is the p-th (0..1] nearest-rank percentile of ds in
// milliseconds; 0 when there are none. It sorts ds.
func percentile(ds []time.Duration, p float64) float64 {
	return float64(testkit.Percentile(ds, p)) / float64(time.Millisecond)
}

// report prints the run as a table, with the ratios Setpoint/baseline,
// and writes it as JSON.
func report(b *testing.B, r appsRun) {
	sp, bl := r.Sides["setpoint"], r.Sides["baseline"]
	var t strings.Builder
	fmt.Fprintf(&t, "%d Apps on %s; client %s\n", r.Apps, r.Machine, r.Client)
	fmt.Fprintf(&t, "  %-40s %12s %12s %8s\n", "", "setpoint", "baseline", "ratio")
	row := func(name string, s, bv float64, format string) {
		ratio := "-"
		if bv != 0 {
			ratio = fmt.Sprintf("%.2f", s/bv)
		}
		fmt.Fprintf(&t, "  %-40s %12s %12s %8s\n", name, fmt.Sprintf(format, s), fmt.Sprintf(format, bv), ratio)
	}
	row("converge, s", sp.ConvergeSeconds, bl.ConvergeSeconds, "%.1f")
	row("API server writes while converging", sp.APIWrites.writes(), bl.APIWrites.writes(), "%.0f")
	row("operator's own writes while converging", sp.OperatorWrites.writes(), bl.OperatorWrites.writes(), "%.0f")
	row("CPU of all processes while converging, s", sp.CPU.total(), bl.CPU.total(), "%.1f")
	row("churn p50, ms", sp.ChurnP50Millis, bl.ChurnP50Millis, "%.0f")
	row("churn p99, ms", sp.ChurnP99Millis, bl.ChurnP99Millis, "%.0f")
	row("operator CPU (converge + churn), s", sp.OperatorCPU, bl.OperatorCPU, "%.1f")
	row("operator peak RSS, MiB", sp.OperatorPeakMiB, bl.OperatorPeakMiB, "%.0f")
	row("writes of a full resync (must be 0)", sp.ResyncWrites.writes(), bl.ResyncWrites.writes(), "%.0f")
	fmt.Fprintf(&t, "  churn samples: setpoint %d, baseline %d\n", sp.ChurnSamples, bl.ChurnSamples)
	fmt.Fprintf(&t, "  direct creation of the same children: %.1f s (setpoint %.2fx, baseline %.2fx)\n",
		r.DirectSeconds, sp.ConvergeSeconds/r.DirectSeconds, bl.ConvergeSeconds/r.DirectSeconds)
	fmt.Fprintf(&t, "  API server writes: direct %s | baseline %s | setpoint %s\n", r.DirectAPIWrites, bl.APIWrites, sp.APIWrites)
	fmt.Fprintf(&t, "  CPU, s: direct %s\n          baseline %s\n          setpoint %s", r.DirectCPU.cpu(), bl.CPU.cpu(), sp.CPU.cpu())
	// Printed, not logged: the testing package cuts long benchmark logs.
	fmt.Println(t.String())
	writeResult(b, fmt.Sprintf("apps-%d.json", r.Apps), r)
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

// objectWrites is onlyWrites without what every process writes whatever
// it handles: Leases (setpoint run always holds one, renewed every 2 s;
// the plane's components hold theirs), access reviews (Setpoint checks
// its watches' RBAC), and Node status (kwok's heartbeats). The operator's
// own client metrics have no resource label, so a resync's writes are
// counted at the API server, all clients, on an otherwise idle plane.
func objectWrites(c counters) counters {
	out := counters{}
	for key, v := range onlyWrites(c) {
		_, res, _ := strings.Cut(key, " ")
		res, _, _ = strings.Cut(res, "/")
		switch res {
		case "LEASES", "SELFSUBJECTACCESSREVIEWS", "SUBJECTACCESSREVIEWS", "TOKENREVIEWS", "NODES":
		default:
			out[key] = v
		}
	}
	return out
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

// heap saves the operator's heap profile (live objects after a GC) into
// $BENCH_PPROF/<name>-heap.pprof, when that is set.
func (p *operatorProcess) heap(b *testing.B, name string) {
	dir := os.Getenv("BENCH_PPROF")
	if dir == "" {
		return
	}
	body, err := testkit.HTTPGet(p.pprof + "heap?gc=1")
	if err != nil {
		b.Logf("heap profile: %v", err)
		return
	}
	_ = os.WriteFile(filepath.Join(dir, name+"-heap.pprof"), []byte(body), 0o644)
}

// profile takes a CPU profile of the operator into
// $BENCH_PPROF/<name>.pprof, when that is set.
func (p *operatorProcess) profile(b *testing.B, name string) {
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
		_ = os.WriteFile(filepath.Join(dir, name+".pprof"), []byte(body), 0o644)
	}()
}
