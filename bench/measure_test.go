package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/testkit"
)

// counters sums a Prometheus counter by one label, e.g. requests by verb.
type counters map[string]float64

func (c counters) minus(before counters) counters {
	out := counters{}
	for k, v := range c {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// writes is the sum over the verbs that change something.
func (c counters) writes() float64 {
	var n float64
	for key, v := range c {
		verb, _, _ := strings.Cut(key, " ")
		switch verb {
		case "GET", "LIST", "WATCH", "CONNECT", "HEAD", "OPTIONS":
		default:
			n += v
		}
	}
	return n
}

// byVerb sums the counts of each verb over resources.
func (c counters) byVerb() counters {
	out := counters{}
	for key, v := range c {
		verb, _, _ := strings.Cut(key, " ")
		out[verb] += v
	}
	return out
}

func (c counters) String() string {
	var parts []string
	for _, verb := range []string{"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"} {
		if v := c.byVerb()[verb]; v != 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f", verb, v))
		}
	}
	return strings.Join(parts, ", ")
}

// total is the sum of all values.
func (c counters) total() float64 {
	var t float64
	for _, v := range c {
		t += v
	}
	return t
}

// cpu formats CPU seconds by component, largest first.
func (c counters) cpu() string {
	names := make([]string, 0, len(c))
	var total float64
	for k, v := range c {
		names = append(names, k)
		total += v
	}
	sort.Slice(names, func(i, j int) bool { return c[names[i]] > c[names[j]] })
	parts := []string{fmt.Sprintf("total %.0f", total)}
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %.1f", strings.ToLower(k), c[k]))
	}
	return strings.Join(parts, ", ")
}

// scrape parses Prometheus text and sums metric by label ("verb+resource"
// for the API server's requests by both), keeping only samples whose other
// labels match where.
func scrape(text []byte, metric, label string, where map[string]string) (counters, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	out := counters{}
	fam, ok := families[metric]
	if !ok {
		return out, nil
	}
	for _, m := range fam.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		skip := false
		for k, v := range where {
			if labels[k] != v {
				skip = true
			}
		}
		if skip {
			continue
		}
		key := labels[label]
		if label == "verb+resource" {
			key = labels["verb"] + " " + labels["resource"]
			if sub := labels["subresource"]; sub != "" {
				key += "/" + sub
			}
		}
		out[strings.ToUpper(key)] += m.GetCounter().GetValue()
	}
	return out, nil
}

// apiserverRequests is the API server's own count of requests by verb and
// resource ("POST DEPLOYMENTS", "PUT DEPLOYMENTS/STATUS"), from all
// clients: the operator, the controller-manager, the scheduler, kwok and
// the benchmark itself.
func apiserverRequests(b *testing.B) counters {
	b.Helper()
	raw, err := testkit.Env(b).Clientset.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(b.Context())
	if err != nil {
		b.Fatalf("apiserver metrics: %v", err)
	}
	c, err := scrape(raw, "apiserver_request_total", "verb+resource", nil)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// operatorProcess is `setpoint run` started by a benchmark.
type operatorProcess struct {
	cmd     *exec.Cmd
	metrics string
	pprof   string
	log     string
}

// startOperator runs an operator binary found like the control plane's
// (bin/ of the checkout) against the benchmark's control plane, serving
// namespace ns (every namespace when ns is ""), and waits until it is
// ready. args come first (for setpoint, "run").
func startOperator(b *testing.B, binary string, args []string, ns string, qps, burst, workers int) *operatorProcess {
	b.Helper()
	bin, err := controlplane.FindBinary(binary)
	if err != nil {
		b.Fatalf("%v (run `make build bench-tools`)", err)
	}
	metricsAddr, probeAddr, pprofAddr := testkit.FreeAddr(b), testkit.FreeAddr(b), testkit.FreeAddr(b)
	logPath := filepath.Join(b.TempDir(), binary+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	args = append([]string{}, args...)
	if ns != "" {
		args = append(args, "--namespace", ns)
	}
	args = append(args,
		"--kubeconfig", testkit.Env(b).ControlPlane.KubeconfigPath,
		"--metrics-bind-address", metricsAddr, "--health-probe-bind-address", probeAddr, "--pprof-bind-address", pprofAddr,
		"--kube-api-qps", strconv.Itoa(qps), "--kube-api-burst", strconv.Itoa(burst), "--workers", strconv.Itoa(workers))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &operatorProcess{cmd: cmd, metrics: "http://" + metricsAddr + "/metrics", pprof: "http://" + pprofAddr + "/debug/pprof/", log: logPath}
	b.Cleanup(func() {
		p.stop()
		if b.Failed() {
			// The log goes with the temporary directory: show its end.
			data, _ := os.ReadFile(logPath)
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			b.Logf("%s log, last lines:\n%s", binary, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	testkit.Eventually(b, time.Minute, func() error {
		_, err := testkit.HTTPGet("http://" + probeAddr + "/readyz")
		return err
	})
	return p
}

func (p *operatorProcess) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	_ = p.cmd.Wait()
}

func (p *operatorProcess) scrape(b *testing.B, metric, label string, where map[string]string) counters {
	b.Helper()
	text, err := testkit.HTTPGet(p.metrics)
	if err != nil {
		b.Fatalf("operator metrics: %v", err)
	}
	c, err := scrape([]byte(text), metric, label, where)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// requests are the operator's own API requests by HTTP method, from
// client-go's counter.
func (p *operatorProcess) requests(b *testing.B) counters {
	return p.scrape(b, "rest_client_requests_total", "method", nil)
}

// reconciles is how many passes the operator's controller made.
func (p *operatorProcess) reconciles(b *testing.B, controller string) float64 {
	c := p.scrape(b, "controller_runtime_reconcile_total", "controller", nil)
	return c[strings.ToUpper(controller)]
}

// usage is the operator process's CPU seconds and peak resident memory
// (MiB).
func (p *operatorProcess) usage(b *testing.B) (cpu, peakMiB float64) {
	b.Helper()
	pid := p.cmd.Process.Pid
	cpu, err := procCPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			peakMiB = kb / 1024
		}
	}
	return cpu, peakMiB
}

// procCPU is a process's user and system CPU seconds, from /proc.
func procCPU(pid int) (float64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100, nil // USER_HZ is 100 on Linux
}

// planeCPU is the CPU seconds of each control-plane component and of the
// benchmark process itself ("harness"), so a phase's cost can be split.
func planeCPU(b *testing.B) counters {
	b.Helper()
	out := counters{}
	pids := append(testkit.Env(b).ControlPlane.Pids(), os.Getpid())
	for _, pid := range pids {
		name := "harness"
		if pid != os.Getpid() {
			comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			if err != nil {
				continue
			}
			name = strings.TrimSpace(string(comm))
		}
		cpu, err := procCPU(pid)
		if err != nil {
			continue
		}
		out[name] += cpu
	}
	return out
}

// waitQuiet waits until the control plane is idle (under a fifth of a
// core over half a second), so that a phase does not pay for the work
// the previous one left behind (endpoint updates, events, pod status).
func waitQuiet(b *testing.B) {
	b.Helper()
	const interval = 500 * time.Millisecond
	deadline := time.Now().Add(3 * time.Minute)
	last := planeCPU(b)
	for {
		time.Sleep(interval) // the measuring interval: CPU used over it is the condition
		now := planeCPU(b)
		var used float64
		for k, v := range now.minus(last) {
			if k != "harness" {
				used += v
			}
		}
		if used < 0.2*interval.Seconds() {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("control plane still busy after 3 minutes: %s", now.minus(last).cpu())
		}
		last = now
	}
}

// tracker times changes from when they are sent until a watch of a
// namespace's Deployments shows them.
type tracker struct {
	mu      sync.Mutex
	pending map[string]sentChange // key -> the change waited for
	done    []time.Duration
}

type sentChange struct {
	value string
	at    time.Time
}

// trackDeployments watches ns's Deployments until the benchmark ends;
// observe says which key a Deployment stands for and the value it shows.
func trackDeployments(b *testing.B, ns string, observe func(*appsv1.Deployment) (key, value string)) *tracker {
	b.Helper()
	wc, err := client.NewWithWatch(testkit.Env(b).Config, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.Context())
	w, err := wc.Watch(ctx, &appsv1.DeploymentList{}, client.InNamespace(ns))
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Stop(); cancel() })
	t := &tracker{pending: map[string]sentChange{}}
	go func() {
		for ev := range w.ResultChan() {
			d, ok := ev.Object.(*appsv1.Deployment)
			if !ok {
				continue
			}
			key, value := observe(d)
			t.mu.Lock()
			if c, ok := t.pending[key]; ok && c.value == value {
				t.done = append(t.done, time.Since(c.at))
				delete(t.pending, key)
			}
			t.mu.Unlock()
		}
	}()
	return t
}

// sent records that key's change to value was sent now.
func (t *tracker) sent(key, value string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending[key] = sentChange{value: value, at: time.Now()}
}

// wait waits until every change sent has been seen and returns the
// latencies measured since the last wait.
func (t *tracker) wait(b *testing.B, timeout time.Duration) []time.Duration {
	b.Helper()
	testkit.Eventually(b, timeout, func() error {
		t.mu.Lock()
		defer t.mu.Unlock()
		if len(t.pending) > 0 {
			return fmt.Errorf("%d changes not yet on their Deployments", len(t.pending))
		}
		return nil
	})
	t.mu.Lock()
	defer t.mu.Unlock()
	done := t.done
	t.done = nil
	return done
}

// writeResult saves v as JSON in -results/name (nothing when -results is
// empty).
func writeResult(b *testing.B, name string, v any) {
	b.Helper()
	if *resultsFlag == "" {
		return
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(*resultsFlag, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*resultsFlag, name), append(data, '\n'), 0o644); err != nil {
		b.Fatal(err)
	}
}
