package operator

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// WatchOption narrows which objects of a kind are handled.
type WatchOption func(*watchConfig)

type watchConfig struct {
	filters []func(client.Object) bool
	preds   []any // func(T) bool, applied after decoding
}

// Labels handles only objects that carry all these labels with these
// values.
func Labels(want map[string]string) WatchOption {
	return func(c *watchConfig) {
		c.filters = append(c.filters, func(u client.Object) bool {
			l := u.GetLabels()
			for k, v := range want {
				if got, ok := l[k]; !ok || got != v {
					return false
				}
			}
			return true
		})
	}
}

// AnnotationMatch says what Annotation requires of an annotation.
type AnnotationMatch struct {
	present bool
	value   *string
}

// Present requires the annotation to exist (any value); Absent requires it
// not to; Value requires this exact value.
var (
	Present = AnnotationMatch{present: true}
	Absent  = AnnotationMatch{present: false}
)

// Value requires an annotation to have exactly v.
func Value(v string) AnnotationMatch { return AnnotationMatch{present: true, value: &v} }

// Annotation handles only objects whose annotation key matches m.
func Annotation(key string, m AnnotationMatch) WatchOption {
	return func(c *watchConfig) {
		c.filters = append(c.filters, func(u client.Object) bool {
			v, ok := u.GetAnnotations()[key]
			if ok != m.present {
				return false
			}
			return m.value == nil || v == *m.value
		})
	}
}

// When handles only objects for which pred is true. pred must be a
// func(T) bool for the watched T.
func When[T client.Object](pred func(T) bool) WatchOption {
	return func(c *watchConfig) { c.preds = append(c.preds, pred) }
}

// Kind holds the handlers of one watched kind. Make it with Watch.
type Kind[T client.Object] struct {
	op       *Operator
	gvk      schema.GroupVersionKind
	name     string
	cfg      watchConfig
	newT     func() T
	recorder recorder.EventRecorder
	events   *eventPoster

	mu       sync.Mutex
	handlers []*changeHandler[T]
	ids      map[string]bool
	raw      []func(context.Context, Event[T]) error
	timers   []*timerSpec[T]
	daemons  []*daemonSpec[T]
	children *childrenSpec[T]
	related  []func(controller.Controller) error
	// reconcilers are the level-triggered handlers (Reconcile).
	reconcilers []ReconcileFunc[T]
	// validators and mutators are the admission handlers.
	validators, mutators []AdmitFunc[T]

	resumed      sync.Map // types.UID -> struct{}: resume handlers done in this process
	optionalDone sync.Map // types.UID -> struct{}: optional delete handlers ran
	refusalsSeen sync.Map // types.UID -> map[string]bool: child refusals already posted
	leftoverSeen sync.Map // types.NamespacedName -> time.Time: children of a gone parent first seen
	tasks        *tasks[T]
	fresh        freshness
	unstored     unstored
}

type changeHandler[T client.Object] struct {
	reason Reason
	field  []string // for field handlers
	fn     HandlerFunc[T]
	cfg    handlerConfig
}

// Watch registers a kind for handling; T is a pointer to its Go type,
// known to the operator's scheme. Objects are read as unstructured and
// decoded one by one, so one object that does not decode gets a Warning
// Event and is skipped without affecting the others.
func Watch[T client.Object](op *Operator, opts ...WatchOption) *Kind[T] {
	newT, gvk := typeOf[T](op, "Watch")
	k := &Kind[T]{op: op, gvk: gvk, name: strings.ToLower(gvk.Kind), newT: newT, ids: map[string]bool{}}
	for _, o := range opts {
		o(&k.cfg)
	}
	for _, p := range k.cfg.preds {
		if _, ok := p.(func(T) bool); !ok {
			panic(fmt.Sprintf("setpoint: When predicate %T does not take %s", p, gvk.Kind))
		}
	}
	k.tasks = newTasks(k)
	op.register(k)
	return k
}

// typeOf returns a constructor for T and its kind. Registration is done
// once at start-up, so a mistake there panics with a clear message rather
// than failing later at run time.
func typeOf[T client.Object](op *Operator, what string) (func() T, schema.GroupVersionKind) {
	var zero T
	typ := reflect.TypeOf(zero)
	if typ == nil || typ.Kind() != reflect.Pointer {
		panic("setpoint: " + what + " needs a pointer type, such as *v1alpha1.Thing")
	}
	newT := func() T { return reflect.New(typ.Elem()).Interface().(T) }
	gvk, err := apiutil.GVKForObject(newT(), op.opts.Scheme)
	if err != nil {
		panic(fmt.Sprintf("setpoint: %v is not in the operator's scheme: %v", typ, err))
	}
	return newT, gvk
}

func (k *Kind[T]) add(reason Reason, field []string, fn HandlerFunc[T], opts []HandlerOption) {
	cfg := newConfig(fn, opts)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ids[cfg.id] {
		panic(fmt.Sprintf("setpoint: two handlers of %s have the id %q; set one with operator.ID", k.gvk.Kind, cfg.id))
	}
	k.ids[cfg.id] = true
	k.handlers = append(k.handlers, &changeHandler[T]{reason: reason, field: field, fn: fn, cfg: cfg})
}

// OnCreate runs fn once for each new object (one never handled before).
func (k *Kind[T]) OnCreate(fn HandlerFunc[T], opts ...HandlerOption) {
	k.add(Create, nil, fn, opts)
}

// OnUpdate runs fn when the object's essence (everything but status and
// system metadata) changed since it was last handled, also when the
// change happened while the operator was down.
func (k *Kind[T]) OnUpdate(fn HandlerFunc[T], opts ...HandlerOption) {
	k.add(Update, nil, fn, opts)
}

// OnDelete runs fn when the object is being deleted. Unless Optional, a
// finalizer keeps the object until every delete handler has succeeded.
func (k *Kind[T]) OnDelete(fn HandlerFunc[T], opts ...HandlerOption) {
	k.add(Delete, nil, fn, opts)
}

// OnResume runs fn once per operator process for each object that was
// already handled before, e.g. to restart in-memory work.
func (k *Kind[T]) OnResume(fn HandlerFunc[T], opts ...HandlerOption) {
	k.add(Resume, nil, fn, opts)
}

// OnField runs fn when the value at a dotted path ("spec.replicas")
// changes, including on creation (Old is then nil).
func (k *Kind[T]) OnField(path string, fn HandlerFunc[T], opts ...HandlerOption) {
	k.add(Update, ParsePath(path), fn, opts)
}

// OnEvent runs fn for every watch event of the kind, before any other
// handling. Its errors are only logged: it is for observing.
func (k *Kind[T]) OnEvent(fn func(context.Context, Event[T]) error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.raw = append(k.raw, fn)
}

func (k *Kind[T]) keepsBooks() (schema.GroupVersionKind, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.gvk, len(k.handlers) > 0
}

func (k *Kind[T]) has(reason Reason) bool {
	for _, h := range k.handlers {
		if h.reason == reason {
			return true
		}
	}
	return false
}

// needsFinalizer: only a non-optional delete handler justifies blocking
// deletion.
func (k *Kind[T]) needsFinalizer() bool {
	for _, h := range k.handlers {
		if h.reason == Delete && !h.cfg.optional {
			return true
		}
	}
	return false
}

func (k *Kind[T]) matches(u client.Object) bool {
	for _, f := range k.cfg.filters {
		if !f(u) {
			return false
		}
	}
	return true
}

func (k *Kind[T]) predicatesMatch(obj T) bool {
	for _, p := range k.cfg.preds {
		if !p.(func(T) bool)(obj) {
			return false
		}
	}
	return true
}

func (k *Kind[T]) decode(u *unstructured.Unstructured) (T, error) {
	return decodeAs(u, k.newT, k.gvk)
}

// decodeAs converts an object of the cache into its Go type.
func decodeAs[T client.Object](u *unstructured.Unstructured, newT func() T, gvk schema.GroupVersionKind) (T, error) {
	obj := newT()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, obj); err != nil {
		return obj, err
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	return obj, nil
}

func (k *Kind[T]) newUnstructured() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(k.gvk)
	return u
}

// newCached returns an empty object of the kind in its cached form
// (form.go).
func (k *Kind[T]) newCached() client.Object { return k.op.newCached(k.gvk) }

// read gets the object key from r (the cache, or the API server), as
// unstructured: passes keep their books on maps, whatever the form the
// cache keeps the kind in. The object is the caller's own.
func (k *Kind[T]) read(ctx context.Context, r client.Reader, key types.NamespacedName) (*unstructured.Unstructured, error) {
	o := k.newCached()
	if err := r.Get(ctx, key, o); err != nil {
		return nil, err
	}
	return asUnstructured(o, k.gvk)
}

// fromCached returns a copy of o, an object of the kind from the cache
// (an event's), as T.
func (k *Kind[T]) fromCached(o client.Object) (T, error) {
	if u, ok := o.(*unstructured.Unstructured); ok {
		return k.decode(u)
	}
	obj := k.newT()
	if err := copyInto(o, obj, k.gvk); err != nil {
		return obj, err
	}
	return obj, nil
}

func (k *Kind[T]) logger() logr.Logger {
	return k.op.log.WithValues("kind", k.gvk.Kind)
}

func (k *Kind[T]) setup(ctx context.Context, op *Operator) error {
	name := op.opts.Name + "-" + k.name
	if k.gvk.Group != "" {
		name += "." + k.gvk.Group
	}
	if err := k.checkStatusSubresource(); err != nil {
		return err
	}
	k.recorder = op.mgr.GetEventRecorder(op.opts.Name)
	k.events = newEventPoster(k.recorder, op.opts.EventLevel)
	c, err := controller.New(name, op.mgr, controller.Options{
		Reconciler:              &dispatcher[T]{k: k},
		MaxConcurrentReconciles: op.opts.Workers,
		// Several operators (tests, leader and standby) may share a process.
		SkipNameValidation: new(true),
		Logger:             k.logger(),
		// Retries are scheduled from the progress on the object; the
		// queue's own backoff only covers API errors of bookkeeping.
		RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](100*time.Millisecond, time.Minute),
	})
	if err != nil {
		return fmt.Errorf("controller for %s: %w", k.gvk.Kind, err)
	}
	src := source.Kind[client.Object](op.mgr.GetCache(), k.newCached(), &watchHandler[T]{k: k})
	if err := c.Watch(src); err != nil {
		return fmt.Errorf("watch %s: %w", k.gvk.Kind, err)
	}
	if err := k.watchChildren(ctx, c); err != nil {
		return err
	}
	for _, watch := range k.related {
		if err := watch(c); err != nil {
			return err
		}
	}
	op.watch(k.newCached)
	return k.tasks.setup(op)
}

// watchHandler turns watch events into work: raw event handlers see
// every event; the object's key goes on the queue when it passes the
// filters (or stops passing them, so its timers stop).
type watchHandler[T client.Object] struct{ k *Kind[T] }

var _ handler.EventHandler = (*watchHandler[client.Object])(nil)

func (h *watchHandler[T]) enqueue(q workqueue.TypedRateLimitingInterface[reconcile.Request], o client.Object) {
	q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}})
}

func (h *watchHandler[T]) Create(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.raw(ctx, Added, e.Object)
	h.k.tasks.touched(e.Object)
	if h.k.matches(e.Object) {
		h.enqueue(q, e.Object)
	}
}

func (h *watchHandler[T]) Update(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.raw(ctx, Modified, e.ObjectNew)
	if len(h.k.timers) > 0 && changedEssence(e.ObjectOld, e.ObjectNew) {
		h.k.tasks.touched(e.ObjectNew) // only idle timers need to know
	}
	if h.k.matches(e.ObjectNew) || h.k.matches(e.ObjectOld) {
		h.enqueue(q, e.ObjectNew)
	}
}

func (h *watchHandler[T]) Delete(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.raw(ctx, Deleted, e.Object)
	if h.k.matches(e.Object) {
		h.k.deleted(ctx, e.Object)
	}
	h.enqueue(q, e.Object)
}

func (h *watchHandler[T]) Generic(ctx context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.enqueue(q, e.Object)
}

func (h *watchHandler[T]) raw(ctx context.Context, typ EventType, o client.Object) {
	h.k.mu.Lock()
	fns := h.k.raw
	h.k.mu.Unlock()
	if len(fns) == 0 {
		return
	}
	if !h.k.matches(o) {
		return
	}
	obj, err := h.k.fromCached(o)
	if err != nil || !h.k.predicatesMatch(obj) {
		return
	}
	log := h.k.logger().WithValues("namespace", o.GetNamespace(), "name", o.GetName(), "event", typ)
	for _, fn := range fns {
		func() {
			defer func() {
				if r := recover(); r != nil {
					log.Error(panicError{r}, "event handler panicked")
				}
			}()
			if err := fn(ctx, Event[T]{Type: typ, Object: obj, Log: log}); err != nil {
				log.Error(err, "event handler failed")
			}
		}()
	}
}

// changedEssence is a cheap test for "the user changed something" used by
// idle timers: spec changes bump generation (where the kind has one), and
// labels and annotations are compared directly, leaving out bookkeeping.
func changedEssence(old, new client.Object) bool {
	if old.GetGeneration() != new.GetGeneration() {
		return true
	}
	if !reflect.DeepEqual(old.GetLabels(), new.GetLabels()) || !reflect.DeepEqual(userAnnotations(old), userAnnotations(new)) {
		return true
	}
	if new.GetGeneration() == 0 && old.GetResourceVersion() != new.GetResourceVersion() {
		// Kinds without generation (ConfigMap): a write that left every
		// annotation alone changed the data; one that changed only
		// bookkeeping was an operator's.
		return reflect.DeepEqual(old.GetAnnotations(), new.GetAnnotations())
	}
	return false
}

func userAnnotations(o client.Object) map[string]string {
	out := map[string]string{}
	for k, v := range o.GetAnnotations() {
		if !bookkeeping(k) {
			out[k] = v
		}
	}
	return out
}

// Get reads an object of the kind from the cache its handlers, timers and
// daemons are driven by. A daemon that reads its object again this way
// never sees it missing while it runs, as a second (typed) cache of the
// kind, which lags this one, could report. Nor does it see a copy older
// than the operator's own last write of the object (PatchStatus, a
// pass's bookkeeping): while the cache is behind that, Get reads from the
// API server.
func (k *Kind[T]) Get(ctx context.Context, key types.NamespacedName) (T, error) {
	o := k.newCached()
	if err := k.op.mgr.GetCache().Get(ctx, key, o); err != nil {
		var zero T
		return zero, err
	}
	if k.fresh.behind(o.GetUID(), o.GetResourceVersion()) {
		// The cache has not seen this operator's own last write yet: a
		// caller deciding from it would undo or skip that write.
		o = k.newCached()
		if err := k.op.mgr.GetAPIReader().Get(ctx, key, o); err != nil {
			var zero T
			return zero, err
		}
	}
	return k.fromCached(o)
}

// checkStatusSubresource refuses a kind that has a Status function but
// no status subresource: every status write would fail (NotFound), and
// the user would see no status and no reason.
func (k *Kind[T]) checkStatusSubresource() error {
	if k.children == nil || k.children.status == nil {
		return nil
	}
	mapping, err := k.op.mgr.GetRESTMapper().RESTMapping(k.gvk.GroupKind(), k.gvk.Version)
	if err != nil {
		return nil // not served yet: the watch reports it
	}
	dc, err := discovery.NewDiscoveryClientForConfig(k.op.mgr.GetConfig())
	if err != nil {
		return fmt.Errorf("discovery for %s: %w", k.gvk.Kind, err)
	}
	list, err := dc.ServerResourcesForGroupVersion(k.gvk.GroupVersion().String())
	if err != nil {
		return nil
	}
	for _, r := range list.APIResources {
		if r.Name == mapping.Resource.Resource+"/status" {
			return nil
		}
	}
	return fmt.Errorf("%s has a Status function but its resource %s has no status subresource: add `subresources: {status: {}}` to its CRD (the kubebuilder marker +kubebuilder:subresource:status)", k.gvk.Kind, mapping.Resource.Resource)
}
