package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	crdmanifests "github.com/setpoint-dev/setpoint/config/crd"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operator/crd"
	"github.com/setpoint-dev/setpoint/operators/app"
)

// builtin is an operator shipped in the setpoint binary. Each one brings
// its CRDs and registers its handlers on the shared Operator; the
// operators themselves live under operators/ and use only the library's
// public API.
type builtin struct {
	name   string
	scheme func(*runtime.Scheme) error
	crds   func() []*apiextensionsv1.CustomResourceDefinition
	setup  func(*operator.Operator) error
}

// builtins is the list `setpoint dev` and `setpoint run` start.
// CeleryCluster and the config reloader join it as they land.
var builtins = []builtin{{
	name:   "app",
	scheme: appsv1alpha1.AddToScheme,
	crds: func() []*apiextensionsv1.CustomResourceDefinition {
		return []*apiextensionsv1.CustomResourceDefinition{crdmanifests.MustGet(appsv1alpha1.GroupVersion.Group, "apps")}
	},
	setup: app.Setup,
}}

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

// runOperators runs the built-in operators until ctx ends.
func runOperators(ctx context.Context, cfg *rest.Config, o hostOptions) error {
	scheme := runtime.NewScheme()
	adders := []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme}
	for _, b := range builtins {
		if b.scheme != nil {
			adders = append(adders, b.scheme)
		}
	}
	for _, add := range adders {
		if err := add(scheme); err != nil {
			return fmt.Errorf("scheme: %w", err)
		}
	}
	if o.installCRDs {
		if err := crd.Install(ctx, cfg, time.Minute, builtinCRDs()...); err != nil {
			return fmt.Errorf("install CRDs: %w", err)
		}
	}
	opts := operator.Options{
		Scheme:           scheme,
		Namespaces:       o.namespaces,
		MetricsAddr:      o.metricsAddr,
		ProbeAddr:        o.probeAddr,
		GracefulShutdown: o.shutdownGrace,
	}
	if o.leaderElect {
		opts.LeaderElection = &operator.LeaderElection{Namespace: o.leaderElectNS}
	}
	op, err := operator.New(cfg, opts)
	if err != nil {
		return err
	}
	for _, b := range builtins {
		if err := b.setup(op); err != nil {
			return fmt.Errorf("set up %s operator: %w", b.name, err)
		}
	}
	return op.Run(ctx)
}
