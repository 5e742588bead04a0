package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	appsv1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
	celeryv1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	postgresv1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
	crdmanifests "github.com/setpoint-dev/setpoint/config/crd"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operator/crd"
	"github.com/setpoint-dev/setpoint/operators/app"
	"github.com/setpoint-dev/setpoint/operators/celery"
	"github.com/setpoint-dev/setpoint/operators/postgres"
	"github.com/setpoint-dev/setpoint/operators/reloader"
)

// builtin is an operator shipped in the setpoint binary. Each one brings
// its CRDs and registers its handlers on the shared Operator; the
// operators themselves live under operators/ and use only the library's
// public API.
type builtin struct {
	name   string
	scheme func(*runtime.Scheme) error
	crds   func() []*apiextensionsv1.CustomResourceDefinition
	setup  func(*operator.Operator, hostOptions) error
}

// builtins is the list `setpoint dev` and `setpoint run` start.
var builtins = []builtin{{
	name:   "app",
	scheme: appsv1alpha1.AddToScheme,
	crds: func() []*apiextensionsv1.CustomResourceDefinition {
		return []*apiextensionsv1.CustomResourceDefinition{crdmanifests.MustGet(appsv1alpha1.GroupVersion.Group, "apps")}
	},
	setup: func(op *operator.Operator, _ hostOptions) error { return app.Setup(op) },
}, {
	name:   "celery",
	scheme: celeryv1alpha1.AddToScheme,
	crds: func() []*apiextensionsv1.CustomResourceDefinition {
		return []*apiextensionsv1.CustomResourceDefinition{crdmanifests.MustGet(celeryv1alpha1.GroupVersion.Group, "celeryclusters")}
	},
	setup: func(op *operator.Operator, _ hostOptions) error { return celery.Setup(op, celery.Options{}) },
}, {
	name:   "postgres",
	scheme: postgresv1alpha1.AddToScheme,
	crds: func() []*apiextensionsv1.CustomResourceDefinition {
		return []*apiextensionsv1.CustomResourceDefinition{crdmanifests.MustGet(postgresv1alpha1.GroupVersion.Group, "postgresclusters")}
	},
	setup: func(op *operator.Operator, o hostOptions) error {
		return postgres.Setup(op, postgres.Options{AgentImage: o.agentImage})
	},
}, {
	name: "reloader",
	setup: func(op *operator.Operator, o hostOptions) error {
		quiet := o.reloaderQuiet
		if quiet == 0 {
			quiet = -1 // the flag's 0 means "at once"; the library's 0 means its default
		}
		return reloader.Setup(op, reloader.Options{Strategy: reloader.Strategy(o.reloaderStrategy), Quiet: quiet})
	},
}}

func builtinNames() []string {
	var names []string
	for _, b := range builtins {
		names = append(names, b.name)
	}
	return names
}

// enabled returns the built-in operators named, in the order of builtins.
func enabled(names []string) ([]builtin, error) {
	var out []builtin
	for _, name := range names {
		if !slices.ContainsFunc(builtins, func(b builtin) bool { return b.name == name }) {
			return nil, fmt.Errorf("--operators: unknown operator %q (have: %s)", name, strings.Join(builtinNames(), ", "))
		}
	}
	for _, b := range builtins {
		if slices.Contains(names, b.name) {
			out = append(out, b)
		}
	}
	return out, nil
}

func crdsOf(ops []builtin) []*apiextensionsv1.CustomResourceDefinition {
	var all []*apiextensionsv1.CustomResourceDefinition
	for _, b := range ops {
		if b.crds != nil {
			all = append(all, b.crds()...)
		}
	}
	return all
}

// checkCRDs fails with what to do when a CRD an enabled operator needs is
// not served. Discovery is open to every authenticated user, so this
// needs no permission on CRDs.
func checkCRDs(cfg *rest.Config, ops []builtin) error {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	for _, b := range ops {
		for _, c := range crdsOf([]builtin{b}) {
			for _, v := range c.Spec.Versions {
				if !v.Served {
					continue
				}
				gv := c.Spec.Group + "/" + v.Name
				list, err := dc.ServerResourcesForGroupVersion(gv)
				if err != nil && !apierrors.IsNotFound(err) {
					return fmt.Errorf("discover %s: %w", gv, err)
				}
				if list == nil || !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == c.Spec.Names.Plural }) {
					return fmt.Errorf("the %s operator needs the CRD %s (%s), which the cluster does not serve: install it (kubectl apply -f config/crd/bases), run with --install-crds, or leave the operator out with --operators", b.name, c.Name, gv)
				}
			}
		}
	}
	return nil
}

// hostOptions are the flags that decide how the operators run, shared by
// `dev` and `run`.
type hostOptions struct {
	// name is the install's identity (--name): it names the webhook
	// configurations, the Lease, the field manager, the bookkeeping
	// prefix and the digest key's Secret.
	name          string
	namespaces    []string
	metricsAddr   string
	probeAddr     string
	pprofAddr     string
	leaderElect   bool
	leaderElectNS string
	lease         operator.LeaderElection // its timings
	installCRDs   bool
	shutdownGrace time.Duration
	qps           float32
	burst         int
	workers       int
	operators     []string

	reloaderStrategy string
	reloaderQuiet    time.Duration
	agentImage       string

	// digestKeySecret is namespace/name of the digest key's Secret (""
	// means <namespace>/setpoint-digest-key, see digestKeyRef).
	digestKeySecret string

	// webhooks serves the operators' admission checks (nil: off). dev
	// sets it; run builds it from its --webhook-* flags.
	webhooks *operator.Webhooks
}

func (o *hostOptions) register(fs *pflag.FlagSet, metricsAddr, probeAddr string, qps float32, burst int) {
	fs.Float32Var(&o.qps, "kube-api-qps", qps, "requests per second the operators' client may make to the API server")
	fs.IntVar(&o.burst, "kube-api-burst", burst, "burst above --kube-api-qps the client may make")
	fs.IntVar(&o.workers, "workers", 8, "objects of one kind handled at the same time")
	fs.StringSliceVar(&o.operators, "operators", builtinNames(), "the built-in operators to run (comma-separated)")
	fs.StringArrayVarP(&o.namespaces, "namespace", "n", nil, "namespace to watch (repeatable); all namespaces when not given")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", metricsAddr, `address of the Prometheus /metrics endpoint ("0" turns it off)`)
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", probeAddr, `address of the /healthz and /readyz endpoints ("0" turns them off)`)
	fs.StringVar(&o.pprofAddr, "pprof-bind-address", "0", `address of Go's /debug/pprof/ profiles ("0": off)`)
	fs.StringVar(&o.reloaderStrategy, "reloader-strategy", string(reloader.StrategyAnnotation),
		`how the reloader rolls a workload: "annotation" (a hash in a pod-template annotation) or "env" (a hash in an env var of the containers that use the object); a workload's `+reloader.AnnotationStrategy+` annotation overrides it`)
	fs.StringVar(&o.agentImage, "postgres-agent-image", postgres.DefaultAgentImage, "Setpoint's image, from which PostgresCluster pods copy the agent (use the image the operator runs)")
	fs.DurationVar(&o.reloaderQuiet, "reloader-quiet", reloader.DefaultQuiet, "how long a workload's configuration must stay unchanged before the reloader rolls it, so a burst of edits rolls once (0: at once)")
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", 30*time.Second, "how long handlers may take to finish after a stop signal")
	fs.StringVar(&o.name, "name", "setpoint", "the install's name: it names the webhook configurations, the leader-election Lease, the field manager, the finalizer and annotation prefix (<name>.setpoint.dev, setpoint.dev for the default) and the digest key's Secret, so installs with different names coexist; a second active instance with the same name is refused")
	fs.StringVar(&o.digestKeySecret, "digest-key-secret", "", "namespace/name of the Secret that keeps the key of the digests of ConfigMaps and Secrets put on workloads; made with a random key if missing (default: <name>-digest-key in the leader-election namespace, else the pod's, else setpoint-system)")
}

// digestKeyRef is where the digest key is kept: --digest-key-secret, or
// <name>-digest-key in the home namespace.
func (o hostOptions) digestKeyRef() (types.NamespacedName, error) {
	if o.digestKeySecret != "" {
		return namespacedName("--digest-key-secret", o.digestKeySecret)
	}
	return types.NamespacedName{Namespace: o.home(), Name: o.name + "-digest-key"}, nil
}

// defaultHome is the home of a process outside a pod: the namespace the
// kustomize install uses, so a stray `setpoint run` on a laptop shares
// the installed one's Lease and is refused while it runs.
const defaultHome = "setpoint-system"

// home is the namespace of the install's own objects (its Lease, its
// digest key): the leader-election namespace, the pod's namespace, or
// defaultHome, in that order.
func (o hostOptions) home() string {
	if o.leaderElectNS != "" {
		return o.leaderElectNS
	}
	if ns := podNamespace(); ns != "" {
		return ns
	}
	return defaultHome
}

// ensureHome creates the home namespace when it is defaultHome and
// missing (a first run against a cluster with no install); any other
// home is the user's to make.
func ensureHome(ctx context.Context, cfg *rest.Config, home string) error {
	if home != defaultHome {
		return nil
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: home}}, metav1.CreateOptions{})
	switch {
	case err == nil, apierrors.IsAlreadyExists(err), ctx.Err() != nil:
		return nil // made, there, or stopped while starting
	case apierrors.IsForbidden(err):
		// It may exist and be invisible to us; the Lease's read says.
		return nil
	default:
		return fmt.Errorf("create namespace %s for the Lease and the digest key (or pass --leader-election-namespace): %w", home, err)
	}
}

// prefix is the bookkeeping prefix of the install named name.
func prefix(name string) string {
	if name == "setpoint" {
		return "setpoint.dev"
	}
	return name + ".setpoint.dev"
}

// podNamespace is the namespace of the pod this runs in, or "" outside a
// cluster.
func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// runOperators runs the built-in operators until ctx ends.
func runOperators(ctx context.Context, cfg *rest.Config, o hostOptions) error {
	if errs := validation.IsDNS1123Label(o.name); len(errs) > 0 || len(o.name) > 40 {
		return fmt.Errorf("--name %q: want a DNS label (lowercase letters, digits and '-') of at most 40 characters", o.name)
	}
	ops, err := enabled(o.operators)
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	adders := []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme}
	for _, b := range ops {
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
		if err := crd.Install(ctx, cfg, time.Minute, crdsOf(ops)...); err != nil {
			return fmt.Errorf("install CRDs: %w", err)
		}
	} else if err := checkCRDs(cfg, ops); err != nil {
		return err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = o.qps, o.burst
	digestKey, err := o.digestKeyRef()
	if err != nil {
		return err
	}
	if err := ensureHome(ctx, cfg, o.home()); err != nil {
		return err
	}
	opts := operator.Options{
		Name:            o.name,
		Prefix:          prefix(o.name),
		DigestKeySecret: digestKey,
		// The built-in operators read values from the API server only
		// (admission, broker URLs, passwords), never from the caches.
		ConcealConfigValues: true,
		Workers:             o.workers,
		Scheme:              scheme,
		Namespaces:          o.namespaces,
		MetricsAddr:         o.metricsAddr,
		ProbeAddr:           o.probeAddr,
		PprofAddr:           o.pprofAddr,
		GracefulShutdown:    o.shutdownGrace,
		Webhooks:            o.webhooks,
	}
	// Always through the Lease: with --leader-elect a second replica
	// waits as a standby; without, it is the only instance of its name,
	// and a second one is refused while the first is active.
	le := o.lease
	le.Namespace = o.home()
	le.FailIfHeld = !o.leaderElect
	opts.LeaderElection = &le
	op, err := operator.New(cfg, opts)
	if err != nil {
		return err
	}
	for _, b := range ops {
		if err := b.setup(op, o); err != nil {
			return fmt.Errorf("set up %s operator: %w", b.name, err)
		}
	}
	return op.Run(ctx)
}
