package operator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/setpoint-dev/setpoint/operator/configdata"
)

// Options configure an Operator. The zero value watches all namespaces,
// serves no metrics or probes and does not elect a leader.
type Options struct {
	// Name identifies the operator: the field manager of its writes, the
	// source of its Events, the name of its leader-election Lease.
	// Default "setpoint". It is also the app.kubernetes.io/managed-by
	// label of its children, so it must be a label value and a Lease name:
	// at most 63 lowercase letters, digits, '-' and '.'.
	Name string
	// Prefix of the annotations and finalizer Setpoint keeps on handled
	// objects (default "setpoint.dev"). Two operators that handle the same
	// kind need different prefixes.
	Prefix string
	// Scheme knows the Go types of the watched kinds (default: client-go's
	// built-in types; add your own with AddToScheme).
	Scheme *runtime.Scheme
	// Namespaces to watch; empty means all.
	Namespaces []string
	// Workers is how many objects of one kind are handled at once (default
	// 8). One object's slow or failing handler never holds up others
	// beyond taking one worker.
	Workers int

	// MetricsAddr serves Prometheus metrics ("" or "0": off).
	MetricsAddr string
	// ProbeAddr serves /healthz and /readyz ("" or "0": off).
	ProbeAddr string
	// PprofAddr serves Go's /debug/pprof/ profiles ("" or "0": off).
	PprofAddr string
	// LeaderElection makes only the holder of a Lease handle objects.
	LeaderElection *LeaderElection
	// Webhooks serves the OnValidate and OnMutate handlers (nil: they are
	// not served).
	Webhooks *Webhooks

	// EventLevel is the highest logr verbosity of handler log lines that
	// are also posted as Events (default 0: Info; errors always are).
	// Set to -1 to post none but errors.
	EventLevel int
	// SyncPeriod re-delivers every object this often (default: client-go's
	// 10 hours). A pass where nothing changed makes no write.
	SyncPeriod time.Duration
	// LeftoverGrace is how long children of a deleted parent are left to
	// Kubernetes' garbage collector before Setpoint deletes them itself
	// (default 30 s; see leftover.go for why).
	LeftoverGrace time.Duration
	// GracefulShutdown bounds how long handlers may run after stop.
	GracefulShutdown time.Duration
	// Logger is the base logger (default: controller-runtime's). It is
	// capped at MaxLogVerbosity.
	Logger *logr.Logger
	// DigestKeySecret names the Secret that keeps the install's digest
	// key (DigestKey); Run creates it, with a random key, when it does
	// not exist. Empty: digests are plain SHA-256.
	DigestKeySecret types.NamespacedName
	// ConcealConfigValues replaces each value of a ConfigMap or Secret in
	// the caches with its digest under the install's key
	// (configdata.Key.Conceal), keeping the keys: for operators that need
	// to know only which keys exist and when a value changes (every
	// built-in one; `setpoint run` sets it). Beside 20,000 Secrets of
	// 50 KiB such an operator then holds no 1 GiB of them, and no Secret
	// value at all. Off by default, because a handler that reads a value
	// from the Client would get a digest; with it on, handlers read
	// values with APIReader.
	ConcealConfigValues bool
}

// LeaderElection settings. Zero durations use client-go's defaults
// (15s lease, 10s renew deadline, 2s retry).
type LeaderElection struct {
	// Namespace of the Lease; default: the pod's namespace.
	Namespace     string
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// FailIfHeld is for a process that must be the only active one of
	// its name: Run fails at once, naming the holder, when another
	// process holds the Lease (renewed within its duration), instead of
	// waiting as a standby; otherwise it holds the Lease while it runs,
	// with its handlers not gated on it, so a second install or a stray
	// run with the same name is refused rather than fighting the first.
	FailIfHeld bool
}

// Operator hosts handlers for one or more kinds on one controller-runtime
// manager. Register kinds with Watch, indexes with NewIndex, hooks with
// OnStartup and OnCleanup, then call Run.
type Operator struct {
	opts Options
	mgr  manager.Manager
	keys keys
	log  logr.Logger

	mu      sync.Mutex
	kinds   []setupper
	startup []func(context.Context) error
	cleanup []func(context.Context) error
	ids     map[string]bool // controller names, to refuse duplicates
	runCtx  context.Context // set by Run: lives as long as the operator
	running bool
	watched []func() client.Object // prototypes of watched kinds, for readiness
	// watchErrs are the watches failing now, for readiness.
	watchErrs watchFailures
	// forms memoizes typedForm (form.go) per kind.
	forms sync.Map
	// controllerIndexed lists the child kinds indexed by controller UID.
	controllerIndexed map[schema.GroupVersionKind]bool
	webhooks          *webhookServer // nil without Options.Webhooks
	digestKey         configdata.Key // loaded by Run from DigestKeySecret
	configs           *configReader  // made by ConfigReader
}

// setupper is a registered kind or index: it wires itself into the
// manager when the operator starts.
type setupper interface {
	setup(ctx context.Context, op *Operator) error
}

// New makes an operator for the cluster of cfg.
func New(cfg *rest.Config, opts Options) (*Operator, error) {
	if opts.Name == "" {
		opts.Name = "setpoint"
	}
	if err := validName(opts.Name); err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = "setpoint.dev"
	}
	if opts.Scheme == nil {
		opts.Scheme = clientgoscheme.Scheme
	}
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	if opts.GracefulShutdown == 0 {
		opts.GracefulShutdown = 30 * time.Second
	}
	log := ctrl.Log.WithName(opts.Name)
	if opts.Logger != nil {
		log = *opts.Logger
	}
	// Requests log through the logger of their context, which is this
	// one: capped, client-go never logs their bodies.
	log = CappedLogger(log)
	op := &Operator{opts: opts, keys: keys{prefix: opts.Prefix}, log: log, ids: map[string]bool{}}
	cacheOpts := cache.Options{DefaultWatchErrorHandler: op.watchFailed, DefaultTransform: op.lean}
	if opts.SyncPeriod > 0 {
		cacheOpts.SyncPeriod = &opts.SyncPeriod
	}
	if len(opts.Namespaces) > 0 {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range opts.Namespaces {
			cacheOpts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	metricsAddr, probeAddr := opts.MetricsAddr, opts.ProbeAddr
	if metricsAddr == "" {
		metricsAddr = "0"
	}
	if probeAddr == "0" {
		probeAddr = ""
	}
	mo := ctrl.Options{
		Scheme:                  opts.Scheme,
		MapperProvider:          newMemoMapper,
		Cache:                   cacheOpts,
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  probeAddr,
		PprofBindAddress:        opts.PprofAddr,
		GracefulShutdownTimeout: &opts.GracefulShutdown,
		Logger:                  log,
	}
	if le := opts.LeaderElection; le != nil && !le.FailIfHeld {
		mo.LeaderElection = true
		mo.LeaderElectionID = opts.Name
		mo.LeaderElectionNamespace = le.Namespace
		mo.LeaderElectionReleaseOnCancel = true
		if le.LeaseDuration > 0 {
			mo.LeaseDuration = &le.LeaseDuration
		}
		if le.RenewDeadline > 0 {
			mo.RenewDeadline = &le.RenewDeadline
		}
		if le.RetryPeriod > 0 {
			mo.RetryPeriod = &le.RetryPeriod
		}
	}
	var ws *webhookServer
	if opts.Webhooks != nil {
		var err error
		if ws, err = newWebhookServer(*opts.Webhooks); err != nil {
			return nil, err
		}
		mo.WebhookServer = ws.server
	}
	mgr, err := ctrl.NewManager(cfg, mo)
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	op.mgr, op.webhooks = mgr, ws
	return op, nil
}

// Manager is the underlying controller-runtime manager, for what Setpoint
// does not wrap (extra runnables, webhooks).
func (op *Operator) Manager() manager.Manager { return op.mgr }

// Client reads from the operator's cache and writes to the API server.
func (op *Operator) Client() client.Client { return op.mgr.GetClient() }

// APIReader reads from the API server directly, with no cache: for reads
// that must see the latest state (admission checks) and for kinds the
// operator must not list and watch whole (one Secret named by an object,
// not every Secret in the cluster). Each read is a request.
func (op *Operator) APIReader() client.Reader { return op.mgr.GetAPIReader() }

// Scheme is the operator's scheme.
func (op *Operator) Scheme() *runtime.Scheme { return op.opts.Scheme }

// Finalizer is the finalizer this operator puts on objects that have
// delete handlers.
func (op *Operator) Finalizer() string { return op.keys.finalizer() }

// OnStartup registers a hook run before any handler, in every replica
// (leader or not). An error stops Run.
func (op *Operator) OnStartup(fn func(context.Context) error) {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.startup = append(op.startup, fn)
}

// OnCleanup registers a hook run after the handlers have stopped, with a
// context bounded by Options.GracefulShutdown.
func (op *Operator) OnCleanup(fn func(context.Context) error) {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.cleanup = append(op.cleanup, fn)
}

func (op *Operator) register(s setupper) {
	op.mu.Lock()
	defer op.mu.Unlock()
	if op.running {
		panic("setpoint: register kinds and indexes before Operator.Run")
	}
	op.kinds = append(op.kinds, s)
}

// Run starts the operator and blocks until ctx ends or it fails.
func (op *Operator) Run(ctx context.Context) error {
	op.mu.Lock()
	if op.running {
		op.mu.Unlock()
		return errors.New("operator already running")
	}
	op.running = true
	op.runCtx = ctx
	kinds, startup, cleanup := op.kinds, op.startup, op.cleanup
	op.mu.Unlock()

	if err := oneBookPerKind(kinds); err != nil {
		return err
	}
	for _, k := range kinds {
		if err := k.setup(ctx, op); err != nil {
			return err
		}
	}
	if err := op.checkLeaseFree(ctx); err != nil {
		return err
	}
	if le := op.opts.LeaderElection; le != nil && le.FailIfHeld {
		if err := op.mgr.Add(&everyReplica{fn: op.holdLease}); err != nil {
			return fmt.Errorf("hold the Lease: %w", err)
		}
	}
	if err := op.loadDigestKey(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: not a failure
		}
		return err
	}
	if err := op.setupWebhooks(ctx, kinds); err != nil {
		return err
	}
	if err := op.mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("healthz: %w", err)
	}
	if err := op.mgr.AddReadyzCheck("watches", op.watchesReady); err != nil {
		return fmt.Errorf("readyz: %w", err)
	}
	if err := op.mgr.Add(&everyReplica{fn: op.checkAccess}); err != nil {
		return fmt.Errorf("access check: %w", err)
	}
	for _, fn := range startup {
		if err := fn(ctx); err != nil {
			return fmt.Errorf("startup hook: %w", err)
		}
	}
	err := op.mgr.Start(ctx)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), op.opts.GracefulShutdown)
	defer cancel()
	var errs []error
	if err != nil {
		errs = append(errs, fmt.Errorf("run: %w", err))
	}
	for _, fn := range cleanup {
		if err := fn(cctx); err != nil {
			errs = append(errs, fmt.Errorf("cleanup hook: %w", err))
		}
	}
	return errors.Join(errs...)
}

// watchesReady fails until the informer of every watched kind has synced,
// and again if one has stopped or its list and watch fail (a revoked
// RBAC rule, say, until it lists again), so a replica whose watches are not
// delivering is taken out of service instead of silently doing nothing
// (the frozen watches of Kopf #585, #957, #1276). Informers re-list and
// re-watch on their own when a watch breaks; this reports the rest.
func (op *Operator) watchesReady(req *http.Request) error {
	op.mu.Lock()
	watched := op.watched
	op.mu.Unlock()
	var errs []error
	for _, obj := range watched {
		inf, err := op.mgr.GetCache().GetInformer(req.Context(), obj(), cache.BlockUntilSynced(false))
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%T: %w", obj(), err))
		case inf.IsStopped():
			errs = append(errs, fmt.Errorf("watch of %s stopped", kindOf(obj())))
		case !inf.HasSynced():
			errs = append(errs, fmt.Errorf("watch of %s not synced yet", kindOf(obj())))
		}
	}
	errs = append(errs, op.watchesFailing()...)
	return errors.Join(errs...)
}

func kindOf(o client.Object) string {
	if k := o.GetObjectKind().GroupVersionKind().Kind; k != "" {
		return k
	}
	return fmt.Sprintf("%T", o)
}

// watch records a prototype of a watched kind for the readiness check.
func (op *Operator) watch(proto func() client.Object) {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.watched = append(op.watched, proto)
}

// bookkeeper is a registered kind that keeps books (diff base, progress,
// finalizer) on its objects under the operator's prefix.
type bookkeeper interface {
	keepsBooks() (schema.GroupVersionKind, bool)
}

// oneBookPerKind refuses two Watch registrations of one kind that both
// have change handlers: they would share one diff base on each object,
// and whichever handled an object first would hide the change from the
// other (a create handler of the second would never run).
func oneBookPerKind(kinds []setupper) error {
	seen := map[schema.GroupVersionKind]bool{}
	for _, k := range kinds {
		b, ok := k.(bookkeeper)
		if !ok {
			continue
		}
		gvk, books := b.keepsBooks()
		if !books {
			continue
		}
		if seen[gvk] {
			return fmt.Errorf("two Watch registrations of %s have change handlers; they would share one diff base on each object: register the handlers on one Watch (filters go on the Watch, When and ID on handlers), or run two Operators with different Options.Prefix", gvk.Kind)
		}
		seen[gvk] = true
	}
	return nil
}

// validName refuses a name that would make every child's apply fail (a
// label value longer than 63 characters) or the Lease unnamable, here
// rather than as an apply error on each object.
func validName(name string) error {
	errs := append(validation.IsValidLabelValue(name), validation.IsDNS1123Subdomain(name)...)
	if len(errs) > 0 {
		return fmt.Errorf("operator name %q: it labels the children (app.kubernetes.io/managed-by) and names the Lease: %s", name, errs[0])
	}
	return nil
}
