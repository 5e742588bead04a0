package processnode_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/setpoint-dev/setpoint/testkit"
)

// BenchmarkPodReady creates N process pods at once and measures each one
// from its create call to Ready as a watch sees it, and the memory the
// process-node machinery holds per running pod: the RSS of each pod's
// sandbox and of the nsenter that waits for its container.
//
//	go test -run '^$' -bench PodReady -benchtime 3x ./controlplane/processnode/
func BenchmarkPodReady(b *testing.B) {
	for _, n := range []int{1, 50} {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			var lat []time.Duration
			var perPodKiB float64
			for range b.N {
				l, kib := podsReady(b, n)
				lat = append(lat, l...)
				perPodKiB = kib
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(pct(lat, 50).Milliseconds()), "p50-ms")
			b.ReportMetric(float64(pct(lat, 99).Milliseconds()), "p99-ms")
			b.ReportMetric(perPodKiB, "KiB-RSS/pod")
		})
	}
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := (len(d)*p + 99) / 100
	return d[min(max(i-1, 0), len(d)-1)]
}

func podsReady(b *testing.B, n int) ([]time.Duration, float64) {
	env := testkit.Env(b)
	ns := env.Namespace(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// An informer, not a bare watch: the API server may end a watch.
	readyAt := make(chan readyEvent, 2*n)
	factory := informers.NewSharedInformerFactoryWithOptions(env.Clientset, 0, informers.WithNamespace(ns))
	inf := factory.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) {
			if p := obj.(*corev1.Pod); ready(p) {
				readyAt <- readyEvent{p.Name, time.Now()}
			}
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	created := make(map[string]time.Time, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := processPod(ns, "p"+strconv.Itoa(i), "exec sleep 3600")
			start := time.Now()
			if _, err := env.Clientset.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				b.Error(err)
				return
			}
			mu.Lock()
			created[p.Name] = start
			mu.Unlock()
		}()
	}
	wg.Wait()
	ready := map[string]time.Duration{}
	for len(ready) < n {
		select {
		case ev := <-readyAt:
			mu.Lock()
			start, ok := created[ev.name]
			mu.Unlock()
			if _, done := ready[ev.name]; ok && !done {
				ready[ev.name] = ev.at.Sub(start)
			}
		case <-ctx.Done():
			b.Fatalf("%d of %d pods Ready", len(ready), n)
		}
	}
	kib := machineryRSS() / float64(n)
	if err := env.Clientset.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, metav1.ListOptions{}); err != nil {
		b.Fatal(err)
	}
	testkit.Eventually(b, 2*time.Minute, func() error {
		l, err := env.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(l.Items) > 0 {
			return fmt.Errorf("pods left: %v", err)
		}
		return nil
	})
	out := make([]time.Duration, 0, n)
	for _, d := range ready {
		out = append(out, d)
	}
	return out, kib
}

type readyEvent struct {
	name string
	at   time.Time
}

// machineryRSS sums the RSS (KiB) of the sandboxes (sleep infinity) and
// the nsenters of this process's plane.
func machineryRSS() float64 {
	self := strconv.Itoa(os.Getpid())
	var kib float64
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		c := strings.ReplaceAll(string(cmd), "\x00", " ")
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		// f[1] is the parent's pid
		if len(f) < 2 || f[1] != self || !(strings.HasPrefix(c, "sleep infinity") || strings.HasPrefix(c, "nsenter ") || strings.HasPrefix(c, "sh -c set -eu")) {
			continue
		}
		status, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		for _, line := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(line, "VmRSS:") {
				v, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
				kib += v
			}
		}
	}
	return kib
}
