package bench

import (
	"flag"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/setpoint-dev/setpoint/operator/configdata"
	"github.com/setpoint-dev/setpoint/operators/reloader"
	"github.com/setpoint-dev/setpoint/testkit"
)

var (
	reloaderDeployments = flag.Int("reloader-deployments", 5000, "opted-in Deployments present in BenchmarkReloader")
	reloaderSamples     = flag.Int("reloader-samples", 100, "ConfigMap updates BenchmarkReloader times in each phase")
)

// reloaderPhase is one run of the reloader over the same workloads.
type reloaderPhase struct {
	Quiet string `json:"quiet"` // --reloader-quiet
	// ReadySeconds: from the operator's start until every Deployment has
	// its digests recorded (the first phase records them all; later ones
	// only sync their caches and find nothing to do).
	ReadySeconds   float64  `json:"readySeconds"`
	StartWrites    counters `json:"startWrites"` // the operator's writes until then
	Samples        int      `json:"samples"`
	P50Millis      float64  `json:"p50Millis"`
	P99Millis      float64  `json:"p99Millis"`
	MaxMillis      float64  `json:"maxMillis"`
	OperatorCPU    float64  `json:"operatorCpuSeconds"`
	OperatorPeakMB float64  `json:"operatorPeakRssMiB"`
	SampleWrites   counters `json:"sampleWrites"` // the operator's writes while sampling
}

type reloaderResult struct {
	Deployments int             `json:"deployments"`
	Machine     string          `json:"machine"`
	Client      string          `json:"client"`
	Phases      []reloaderPhase `json:"phases"`
}

// BenchmarkReloader measures the config reloader with
// -reloader-deployments opted-in Deployments present (replicas 0, each
// using its own ConfigMap through envFrom): the latency from a ConfigMap
// update to its Deployment's pod template being patched, p50 and p99, and
// the operator's memory. It runs the reloader twice over the same
// objects: with the default quiet window, which every roll waits for,
// and with --reloader-quiet 0, which shows the machinery alone.
func BenchmarkReloader(b *testing.B) {
	env := testkit.Env(b)
	n, samples := *reloaderDeployments, *reloaderSamples
	phases := []string{reloader.DefaultQuiet.String(), "0s"}
	if samples*len(phases) > n {
		b.Fatalf("-reloader-samples %d needs at least %d Deployments", samples, samples*len(phases))
	}
	for range b.N {
		ns := env.Namespace(b)
		parallel(b, n, func(i int) error {
			cm, d := reloaderObjects(ns, i)
			if err := env.Client.Create(b.Context(), cm); err != nil {
				return err
			}
			return env.Client.Create(b.Context(), d)
		})
		r := reloaderResult{
			Deployments: n,
			Machine:     fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), memTotal()),
			Client:      fmt.Sprintf("QPS %d, burst %d, %d workers", clientQPS, clientBurst, workers),
		}
		for p, quiet := range phases {
			var ph reloaderPhase
			ph.Quiet = quiet
			waitQuiet(b)
			start := time.Now()
			op := startOperator(b, "setpoint", []string{"run", "--log-level", "error", "--operators", "reloader", "--reloader-quiet", quiet,
				"--digest-key-secret", ns + "/bench-digest-key"}, ns, clientQPS, clientBurst, workers)
			waitAll(b, ns, n, &appsv1.DeploymentList{}, func(o client.Object) bool {
				_, ok := o.GetAnnotations()[reloader.AnnotationHashes]
				return ok
			})
			ph.ReadySeconds = time.Since(start).Seconds()
			ph.StartWrites = onlyWrites(op.requests(b))
			// The roll-free record bumps every Deployment's generation
			// (annotations count), and the controller-manager then syncs
			// them all: time the reloads on an idle plane.
			waitQuiet(b)
			before := op.requests(b)
			lat := sampleReloads(b, ns, p*samples, samples)
			ph.Samples = len(lat)
			ph.MaxMillis = percentile(lat, 1)
			ph.P50Millis, ph.P99Millis = percentile(lat, 0.50), percentile(lat, 0.99)
			ph.SampleWrites = onlyWrites(op.requests(b).minus(before))
			ph.OperatorCPU, ph.OperatorPeakMB = op.usage(b)
			op.stop()
			r.Phases = append(r.Phases, ph)
			b.ReportMetric(ph.P99Millis, "p99-ms-quiet-"+quiet)
		}
		reportReloader(b, r)
	}
}

// reloaderObjects are the i-th ConfigMap and the Deployment that uses it.
func reloaderObjects(ns string, i int) (*corev1.ConfigMap, *appsv1.Deployment) {
	name := fmt.Sprintf("web-%04d", i)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string]string{"GREETING": "hello"}}
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{reloader.AnnotationAuto: "true"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(0)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "web", Image: "example/bench:1",
					EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}},
				}}},
			},
		},
	}
	return cm, d
}

// sampleReloads updates the ConfigMaps first..first+count-1, one every
// 100 ms, and returns how long each took to reach its Deployment's pod
// template (seen through a watch).
func sampleReloads(b *testing.B, ns string, first, count int) []time.Duration {
	b.Helper()
	env := testkit.Env(b)
	t := trackDeployments(b, ns, func(d *appsv1.Deployment) (string, string) {
		return d.Name, d.Spec.Template.Annotations[reloader.AnnotationConfigHash]
	})
	key := digestKey(b, ns)
	tick := time.NewTicker(100 * time.Millisecond) // the update rate, not synchronisation
	defer tick.Stop()
	for i := first; i < first+count; i++ {
		<-tick.C
		cm, _ := reloaderObjects(ns, i)
		cm.Data["GREETING"] = "hi"
		// The hash the roll writes is the digest of the new content
		// (of its values' digests, which the cache holds), under the
		// install's key.
		hash := reloader.Hashes{"ConfigMap/" + cm.Name: key.Digest(key.Values(configdata.FromConfigMap(cm)), nil), reloader.KeyEntry: key.Fingerprint()}.Combined()
		t.sent(cm.Name, hash)
		if err := env.Client.Update(b.Context(), cm); err != nil {
			b.Fatal(err)
		}
	}
	return t.wait(b, 3*time.Minute)
}

func reportReloader(b *testing.B, r reloaderResult) {
	var t strings.Builder
	fmt.Fprintf(&t, "config reloader, %d opted-in Deployments on %s; client %s\n", r.Deployments, r.Machine, r.Client)
	fmt.Fprintf(&t, "  %-8s %10s %8s %8s %8s %8s %10s %10s  %s\n", "quiet", "ready, s", "samples", "p50 ms", "p99 ms", "max ms", "CPU, s", "peak MiB", "writes at start | while sampling")
	for _, p := range r.Phases {
		fmt.Fprintf(&t, "  %-8s %10.1f %8d %8.0f %8.0f %8.0f %10.1f %10.0f  %s | %s\n", p.Quiet, p.ReadySeconds, p.Samples,
			p.P50Millis, p.P99Millis, p.MaxMillis, p.OperatorCPU, p.OperatorPeakMB, p.StartWrites, p.SampleWrites)
	}
	fmt.Println(t.String())
	writeResult(b, fmt.Sprintf("reloader-%d.json", r.Deployments), r)
}

// digestKey reads the digest key the operator made in ns.
func digestKey(b *testing.B, ns string) configdata.Key {
	b.Helper()
	s := &corev1.Secret{}
	if err := testkit.Env(b).Client.Get(b.Context(), client.ObjectKey{Namespace: ns, Name: "bench-digest-key"}, s); err != nil {
		b.Fatalf("read the digest key: %v", err)
	}
	return s.Data["key"]
}
