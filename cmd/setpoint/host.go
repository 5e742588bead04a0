package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/pflag"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/setpoint-dev/setpoint/operator/crd"
)

// builtin is an operator shipped in the setpoint binary. Each one brings
// its CRDs and registers its handlers on the shared manager; the operators
// themselves live under operators/ and use only the library's public API.
type builtin struct {
	name  string
	crds  func() []*apiextensionsv1.CustomResourceDefinition
	setup func(manager.Manager) error
}

// builtins is the list `setpoint dev` and `setpoint run` start. App,
// CeleryCluster and the config reloader join it as they land.
var builtins []builtin

func builtinCRDs() []*apiextensionsv1.CustomResourceDefinition {
	var all []*apiextensionsv1.CustomResourceDefinition
	for _, b := range builtins {
		if b.crds != nil {
			all = append(all, b.crds()...)
		}
	}
	return all
}

// hostOptions are the flags that decide how the operators run, shared by
// `dev` and `run`.
type hostOptions struct {
	namespaces    []string
	metricsAddr   string
	probeAddr     string
	leaderElect   bool
	leaderElectNS string
	installCRDs   bool
	shutdownGrace time.Duration
}

func (o *hostOptions) register(fs *pflag.FlagSet, metricsAddr, probeAddr string) {
	fs.StringArrayVarP(&o.namespaces, "namespace", "n", nil, "namespace to watch (repeatable); all namespaces when not given")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", metricsAddr, `address of the Prometheus /metrics endpoint ("0" turns it off)`)
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", probeAddr, `address of the /healthz and /readyz endpoints ("0" turns them off)`)
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", 30*time.Second, "how long handlers may take to finish after a stop signal")
}

// runOperators runs the built-in operators until ctx ends. started, when
// not nil, is called once the manager is about to start.
func runOperators(ctx context.Context, cfg *rest.Config, o hostOptions, started func()) error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return fmt.Errorf("scheme: %w", err)
	}
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		return fmt.Errorf("scheme: %w", err)
	}
	if o.installCRDs {
		if err := crd.Install(ctx, cfg, time.Minute, builtinCRDs()...); err != nil {
			return fmt.Errorf("install CRDs: %w", err)
		}
	}
	var cacheOpts cache.Options
	if len(o.namespaces) > 0 {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range o.namespaces {
			cacheOpts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         cacheOpts,
		Metrics:                       metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:        o.probeAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              "setpoint.setpoint.dev",
		LeaderElectionNamespace:       o.leaderElectNS,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       &o.shutdownGrace,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("healthz: %w", err)
	}
	// Ready once the informers have synced: before that a handler would see
	// an empty cache.
	if err := mgr.AddReadyzCheck("informers", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return errors.New("informers not synced")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("readyz: %w", err)
	}
	for _, b := range builtins {
		if err := b.setup(mgr); err != nil {
			return fmt.Errorf("set up %s operator: %w", b.name, err)
		}
	}
	if started != nil {
		started()
	}
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("run operators: %w", err)
	}
	return nil
}
