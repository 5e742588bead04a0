// Command baseline is the App operator written as a plain
// controller-runtime reconciler, the way a careful Go team would without
// Setpoint: typed watches of the owned kinds, create-or-update of each
// child with a semantic comparison first (so a converged pass writes
// nothing), pruning by owner label, status updated only when it changed,
// and a field index from referenced ConfigMaps and Secrets to Apps.
//
// It uses the App operator's pure builders and status function, so both
// sides do the same work and the benchmark compares only the machinery
// around them. It serves the same flags as `setpoint run` that the
// benchmark uses.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
)

func main() {
	var (
		namespace, metricsAddr, probeAddr, pprofAddr string
		qps                                          float64
		burst, workers                               int
	)
	// --kubeconfig is controller-runtime's own flag.
	flag.StringVar(&namespace, "namespace", "", "namespace to serve")
	flag.StringVar(&metricsAddr, "metrics-bind-address", "0", "metrics address")
	flag.StringVar(&probeAddr, "health-probe-bind-address", "0", "probe address")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "0", "pprof address")
	flag.Float64Var(&qps, "kube-api-qps", 50, "client QPS")
	flag.IntVar(&burst, "kube-api-burst", 100, "client burst")
	flag.IntVar(&workers, "workers", 8, "concurrent reconciles")
	flag.Parse()
	ctrl.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, namespace, metricsAddr, probeAddr, pprofAddr, float32(qps), burst, workers); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, namespace, metricsAddr, probeAddr, pprofAddr string, qps float32, burst, workers int) error {
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = qps, burst
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := appsv1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	if probeAddr == "0" {
		probeAddr = ""
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{namespace: {}}},
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: probeAddr,
		PprofBindAddress:       pprofAddr,
	})
	if err != nil {
		return err
	}
	if err := setup(ctx, mgr, workers); err != nil {
		return err
	}
	if probeAddr != "" {
		if err := mgr.AddReadyzCheck("informers", func(_ *http.Request) error {
			if !mgr.GetCache().WaitForCacheSync(ctx) {
				return fmt.Errorf("cache not synced")
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return mgr.Start(ctx)
}
