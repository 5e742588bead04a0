package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// ChildrenFunc returns the complete set of children an object should have
// now: a pure function of the object, like a React render. Names and
// namespaces come from the returned objects (the namespace defaults to the
// parent's); Setpoint adds the owner reference and its labels.
type ChildrenFunc[T client.Object] func(ctx context.Context, parent T) ([]client.Object, error)

// StatusFunc returns the parent's whole status, computed from the parent
// and its children as they are after the pass. To keep condition
// transition times, start from the parent's current conditions and use
// meta.SetStatusCondition, which changes a time only when the condition's
// status changes.
type StatusFunc[T client.Object] func(ctx context.Context, parent T, children *Observed) (any, error)

type childrenSpec[T client.Object] struct {
	fn     ChildrenFunc[T]
	owns   []schema.GroupVersionKind
	status StatusFunc[T]
}

// Event reasons of declarative children.
const (
	ReasonChildrenFailed = "ChildrenFailed"
	ReasonChildConflict  = "ChildConflict"
)

// Children makes the kind level-triggered: each pass computes the desired
// children with fn, applies (server-side, field manager Options.Name) each
// one that differs from the cluster, and deletes the children it made
// before that are no longer desired. owns lists the kinds children may
// have (namespaced kinds, in the parent's namespace); they are watched, so
// a child edited or deleted by hand is put back.
// Nothing is kept on the parent for this, and a pass where every child is
// as desired makes no write.
//
// The desired children are the whole intent of Setpoint's field
// manager: a field applied before and no longer declared is removed
// (unless another manager owns it too; see HandOff to keep its value),
// and a child is applied again only when its intent changed or someone
// took one of its fields (see owned.go). Fields other managers own are
// never looked at. An explicit null in a desired child claims nothing.
func (k *Kind[T]) Children(fn ChildrenFunc[T], owns ...client.Object) {
	k.mu.Lock()
	defer k.mu.Unlock()
	spec := &childrenSpec[T]{fn: fn}
	for _, o := range owns {
		gvk, err := apiutil.GVKForObject(o, k.op.opts.Scheme)
		if err != nil {
			panic(fmt.Sprintf("setpoint: owned kind %T is not in the operator's scheme: %v", o, err))
		}
		spec.owns = append(spec.owns, gvk)
	}
	if k.children != nil {
		spec.status = k.children.status
	}
	k.children = spec
}

// Status sets how the parent's status is computed from its children
// (needs Children). The status is written, to the status subresource, only
// when it differs from the current one.
func (k *Kind[T]) Status(fn StatusFunc[T]) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.children == nil {
		panic("setpoint: Status needs Children first")
	}
	k.children.status = fn
}

// ownerLabel marks children with their parent's UID, so pruning lists only
// them.
func (k keys) ownerLabel() string { return k.prefix + "/owner-uid" }

// controllerIndex indexes children by the UID of their controller, so a
// pass lists its own children without scanning the namespace.
const controllerIndex = "setpoint.dev/controller-uid"

// indexControllers registers controllerIndex for a kind, once per
// operator (several parent kinds may own the same child kind).
func (op *Operator) indexControllers(ctx context.Context, gvk schema.GroupVersionKind) error {
	op.mu.Lock()
	if op.controllerIndexed[gvk] {
		op.mu.Unlock()
		return nil
	}
	if op.controllerIndexed == nil {
		op.controllerIndexed = map[schema.GroupVersionKind]bool{}
	}
	op.controllerIndexed[gvk] = true
	op.mu.Unlock()
	proto := op.newCached(gvk)
	err := op.mgr.GetFieldIndexer().IndexField(ctx, proto, controllerIndex, func(o client.Object) []string {
		if ref := metav1.GetControllerOf(o); ref != nil {
			return []string{string(ref.UID)}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("index %s by controller: %w", gvk.Kind, err)
	}
	err = op.mgr.GetFieldIndexer().IndexField(ctx, proto, controllerNameIndex, func(o client.Object) []string {
		if ref := metav1.GetControllerOf(o); ref != nil {
			if gv, err := schema.ParseGroupVersion(ref.APIVersion); err == nil {
				return []string{controllerName(gv.Group, ref.Kind, ref.Name)}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("index %s by controller name: %w", gvk.Kind, err)
	}
	return nil
}

// watchChildren watches the owned kinds and maps their events to the
// controlling parent.
func (k *Kind[T]) watchChildren(ctx context.Context, c interface {
	Watch(source.TypedSource[reconcile.Request]) error
}) error {
	if k.children == nil {
		return nil
	}
	for _, gvk := range k.children.owns {
		if err := k.op.indexControllers(ctx, gvk); err != nil {
			return err
		}
		proto := k.op.newCached(gvk)
		h := handler.EnqueueRequestForOwner(k.op.opts.Scheme, k.op.mgr.GetRESTMapper(), k.newUnstructured(), handler.OnlyControllerOwner())
		if err := c.Watch(source.Kind[client.Object](k.op.mgr.GetCache(), proto, h)); err != nil {
			return fmt.Errorf("watch %s children: %w", gvk.Kind, err)
		}
	}
	return nil
}

// Observed holds a parent's children as they are after a pass.
type Observed struct {
	scheme *runtime.Scheme
	// objs are in their cached form (form.go), or unstructured as applied.
	objs     map[schema.GroupKind]map[string]client.Object
	refusals []*childError
}

// Refused says why children the pass could not have as desired are
// missing or out of date: reason ReasonChildRefused (the API server
// refused the child: invalid, forbidden, denied by a webhook; the
// message is the server's, naming the child) or ReasonChildConflict
// (another controller has its name). Both are "" when every child is
// as desired. A status puts them in a condition, e.g. Ready=False with
// this reason, so the user sees them with kubectl.
func (o *Observed) Refused() (reason, message string) {
	var msgs []string
	for _, r := range o.refusals {
		if reason == "" || r.reason == ReasonChildRefused {
			reason = r.reason
		}
		msgs = append(msgs, r.msg)
	}
	return reason, strings.Join(msgs, "; ")
}

func (o *Observed) add(gk schema.GroupKind, obj client.Object) {
	if o.objs[gk] == nil {
		o.objs[gk] = map[string]client.Object{}
	}
	o.objs[gk][obj.GetName()] = obj
}

// Get fills into (a typed object such as *appsv1.Deployment) with the
// observed child of that kind and name, and reports whether there is one.
func (o *Observed) Get(into client.Object, name string) (bool, error) {
	gvk, err := apiutil.GVKForObject(into, o.scheme)
	if err != nil {
		return false, err
	}
	obj, ok := o.objs[gvk.GroupKind()][name]
	if !ok {
		return false, nil
	}
	return true, copyInto(obj, into, gvk)
}

// Len is the number of observed children.
func (o *Observed) Len() int {
	n := 0
	for _, m := range o.objs {
		n += len(m)
	}
	return n
}

// converge applies the desired children, prunes the rest and writes the
// status. It returns an error to be retried with backoff.
func (d *dispatcher[T]) converge(ctx context.Context, u *unstructured.Unstructured, obj T) error {
	k := d.k
	spec := k.children
	desired, err := callChildren(ctx, spec.fn, obj)
	if err != nil {
		if k.events.allow(u.GetUID()) {
			k.events.post(u, corev1.EventTypeWarning, ReasonChildrenFailed, fmt.Sprintf("Cannot compute the children: %v", err))
		}
		if IsPermanent(err) {
			return nil
		}
		return fmt.Errorf("children of %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	var errs []error
	if err := d.removeEarlier(ctx, u); err != nil {
		errs = append(errs, err)
	}
	observed := &Observed{scheme: k.op.opts.Scheme, objs: map[schema.GroupKind]map[string]client.Object{}}
	wanted := map[schema.GroupKind]map[string]bool{}
	owned := map[schema.GroupKind]bool{}
	for _, gvk := range spec.owns {
		owned[gvk.GroupKind()] = true
	}
	for _, child := range desired {
		du, err := d.desiredChild(u, child)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		gk := du.GroupVersionKind().GroupKind()
		if !owned[gk] {
			errs = append(errs, Permanent(fmt.Errorf("child %s %s: kind not declared in Children(..., owns)", gk.Kind, du.GetName())))
			continue
		}
		if wanted[gk] == nil {
			wanted[gk] = map[string]bool{}
		}
		wanted[gk][du.GetName()] = true
		got, err := d.applyChild(ctx, u, du)
		if err != nil {
			var ce *childError
			if errors.As(err, &ce) {
				observed.refusals = append(observed.refusals, ce)
			}
			errs = append(errs, err)
			continue
		}
		if got != nil {
			observed.add(gk, got)
		}
	}
	if err := d.prune(ctx, u, wanted); err != nil {
		errs = append(errs, err)
	}
	d.reportRefusals(u, observed.refusals)
	if spec.status != nil {
		if err := d.writeStatus(ctx, u, obj, observed); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// reportRefusals posts a Warning Event for each refusal of the API
// server not reported before for this parent (and forgets them once the
// parent has none), so a refusal that every pass meets again is one
// Event, not one per pass.
func (d *dispatcher[T]) reportRefusals(u *unstructured.Unstructured, refusals []*childError) {
	seen, _ := d.k.refusalsSeen.Load(u.GetUID())
	was, _ := seen.(map[string]bool)
	now := map[string]bool{}
	for _, r := range refusals {
		if r.reason != ReasonChildRefused {
			continue // ChildConflict has its own Event
		}
		now[r.msg] = true
		if !was[r.msg] && d.k.events.allow(u.GetUID()) {
			d.k.events.post(u, corev1.EventTypeWarning, ReasonChildRefused, r.msg)
		} else if !was[r.msg] {
			delete(now, r.msg) // rate limited: post it on a later pass
		}
	}
	if len(now) == 0 {
		d.k.refusalsSeen.Delete(u.GetUID())
		return
	}
	d.k.refusalsSeen.Store(u.GetUID(), now)
}

func callChildren[T client.Object](ctx context.Context, fn ChildrenFunc[T], obj T) (out []client.Object, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError{r}
		}
	}()
	return fn(ctx, obj)
}

// desiredChild renders a child as unstructured with its kind, namespace,
// owner reference and labels.
func (d *dispatcher[T]) desiredChild(parent *unstructured.Unstructured, child client.Object) (*unstructured.Unstructured, error) {
	k := d.k
	gvk, err := apiutil.GVKForObject(child, k.op.opts.Scheme)
	if err != nil {
		return nil, Permanent(fmt.Errorf("child %T: %w", child, err))
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(child)
	if err != nil {
		return nil, Permanent(fmt.Errorf("child %s %s: %w", gvk.Kind, child.GetName(), err))
	}
	du := &unstructured.Unstructured{Object: m}
	du.SetGroupVersionKind(gvk)
	delete(du.Object, "status")
	unstructured.RemoveNestedField(du.Object, "metadata", "creationTimestamp")
	if du.GetNamespace() == "" {
		du.SetNamespace(parent.GetNamespace())
	}
	labels := du.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[k.op.keys.ownerLabel()] = string(parent.GetUID())
	labels["app.kubernetes.io/managed-by"] = k.op.opts.Name
	du.SetLabels(labels)
	du.SetOwnerReferences([]metav1.OwnerReference{{
		APIVersion:         k.gvk.GroupVersion().String(),
		Kind:               k.gvk.Kind,
		Name:               parent.GetName(),
		UID:                parent.GetUID(),
		Controller:         new(true),
		BlockOwnerDeletion: new(true),
	}})
	return du, nil
}

func controlledBy(o metav1.Object, uid types.UID) bool {
	ref := metav1.GetControllerOf(o)
	return ref != nil && ref.UID == uid
}

// applyChild applies du unless the cluster already has it as desired, and
// returns the child as it now is. An object of that name that another
// controller owns is left alone, with a Warning Event on the parent;
// one left by an earlier parent of this kind and name is deleted first
// (see leftByEarlier).
//
// "As desired" is exact (see owned.go): the child carries the digest of
// this very intent and Setpoint's field manager still owns every field
// of it. Anything else is applied with forced ownership, which is how
// drift is reverted: a field someone changed goes back to Setpoint's
// value, and a field Setpoint no longer declares is removed unless
// another manager owns it too.
func (d *dispatcher[T]) applyChild(ctx context.Context, parent, du *unstructured.Unstructured) (client.Object, error) {
	k := d.k
	handOff := takeHandOff(du)
	if err := d.stampIntent(du); err != nil {
		return nil, Permanent(fmt.Errorf("child %s %s: %w", du.GetKind(), du.GetName(), err))
	}
	live := k.op.newCached(du.GroupVersionKind())
	// Read only (compared, then handed to Observed, which copies), so
	// the cache's copy needs no deep copy.
	err := k.op.mgr.GetCache().Get(ctx, client.ObjectKeyFromObject(du), live, client.UnsafeDisableDeepCopy)
	if apierrors.IsNotFound(err) {
		// Not in the cache: make sure with the API server before creating,
		// so an object someone made a moment ago is not taken over.
		err = k.op.mgr.GetAPIReader().Get(ctx, client.ObjectKeyFromObject(du), live)
	}
	switch {
	case err == nil:
		if d.leftByEarlier(parent, live) {
			// Its deletion was asked for at the start of the pass (see
			// removeEarlier); the cache may not show it yet.
			return nil, fmt.Errorf("%s %s is left by an earlier %s of this name: waiting for it to go", du.GetKind(), du.GetName(), k.gvk.Kind)
		}
		if !controlledBy(live, parent.GetUID()) {
			msg := fmt.Sprintf("%s %s exists and is not controlled by this object; it is left alone", du.GetKind(), du.GetName())
			if k.events.allow(parent.GetUID()) {
				k.events.post(parent, corev1.EventTypeWarning, ReasonChildConflict, msg)
			}
			return nil, &childError{reason: ReasonChildConflict, msg: msg, err: Permanent(errors.New(msg))}
		}
		// A cached copy older than our own last apply is not drift.
		if k.fresh.behind(live.GetUID(), live.GetResourceVersion()) || d.upToDate(live, du) {
			return live, nil
		}
		if err := d.handOff(ctx, live, du, handOff); err != nil {
			return nil, err
		}
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("read child %s %s: %w", du.GetKind(), du.GetName(), err)
	}
	var rv string
	if err == nil {
		rv = live.GetResourceVersion()
	}
	if err := k.op.mgr.GetClient().Apply(ctx, client.ApplyConfigurationFromUnstructured(du), client.FieldOwner(k.op.opts.Name), client.ForceOwnership); err != nil {
		if !apierrors.IsInvalid(err) || rv == "" {
			return nil, refused(du, fmt.Errorf("apply %s %s/%s: %w", du.GetKind(), du.GetNamespace(), du.GetName(), err), err)
		}
		if rerr := d.replaceLists(ctx, du, rv); rerr != nil {
			return nil, refused(du, fmt.Errorf("apply %s %s/%s: %w (and replacing it: %w)", du.GetKind(), du.GetNamespace(), du.GetName(), err, rerr), err)
		}
	}
	k.fresh.wrote(du.GetUID(), du.GetResourceVersion())
	return du, nil
}

// leftByEarlier reports whether live is a child of an earlier parent of
// this kind and name, which is gone (see leftover.go): its only owner
// reference is the controller reference of such a parent with another
// UID. Names are unique, so while this parent exists that one cannot.
func (d *dispatcher[T]) leftByEarlier(parent *unstructured.Unstructured, live metav1.Object) bool {
	refs := live.GetOwnerReferences()
	if len(refs) != 1 || refs[0].Controller == nil || !*refs[0].Controller {
		return false
	}
	ref := refs[0]
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return false
	}
	return gv.Group == d.k.gvk.Group && ref.Kind == d.k.gvk.Kind && ref.Name == parent.GetName() &&
		ref.UID != parent.GetUID() && (parent.GetNamespace() == "" || live.GetNamespace() == parent.GetNamespace())
}

// stampIntent puts the digest of du, as it is, on du.
func (d *dispatcher[T]) stampIntent(du *unstructured.Unstructured) error {
	sum, err := appliedDigest(du.Object)
	if err != nil {
		return err
	}
	ann := du.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[d.k.op.keys.applied()] = sum
	du.SetAnnotations(ann)
	return nil
}

// upToDate reports whether live is what applying du would leave: it was
// applied with this intent, and no field of it has been taken since.
func (d *dispatcher[T]) upToDate(live client.Object, du *unstructured.Unstructured) bool {
	key := d.k.op.keys.applied()
	if live.GetAnnotations()[key] != du.GetAnnotations()[key] {
		return false
	}
	fields := appliedFields(live, d.k.op.opts.Name)
	return fields != nil && ownsAll(fields, du.Object)
}

// handOffAnnotation carries HandOff's paths from a builder to the pass;
// it is taken off before the child is applied.
const handOffAnnotation = "setpoint.dev/" + handOffName

// HandOff marks fields of a desired child (dotted paths such as
// "spec.replicas") that Setpoint may have set before and now leaves to
// someone else, keeping their live values. Without it, applying a child
// that no longer sets a field removes the field, and the API server puts
// its default back: a Deployment handed to an autoscaler would drop to
// one replica until the autoscaler reacts. With it, the live value is
// first handed to a field manager of its own ("<name>-handoff"), as the
// Kubernetes docs on server-side apply describe for autoscalers, so the
// field stays when Setpoint lets go of it; the next writer (the
// autoscaler) then takes it over. Paths the child sets are not affected.
func HandOff[O client.Object](obj O, paths ...string) O {
	ann := obj.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[handOffAnnotation] = strings.Join(paths, ",")
	obj.SetAnnotations(ann)
	return obj
}

// DryRunApply asks the API server whether it would accept obj, a child
// as a ChildrenFunc returns it, applied the way a pass applies children
// (server-side apply under the operator's field manager, forced), without
// storing anything. An admission check can build the children of the
// object under review and refuse it with the server's own message, so a
// user sees at apply time what would otherwise only be a ChildRefused
// condition. The error is the API server's (apierrors.IsInvalid for a
// child it refuses).
func (op *Operator) DryRunApply(ctx context.Context, obj client.Object) error {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return fmt.Errorf("encode %T: %w", obj, err)
	}
	du := &unstructured.Unstructured{Object: m}
	if du.GetAPIVersion() == "" || du.GetKind() == "" {
		gvk, err := apiutil.GVKForObject(obj, op.opts.Scheme)
		if err != nil {
			return fmt.Errorf("dry-run %T: %w", obj, err)
		}
		du.SetGroupVersionKind(gvk)
	}
	takeHandOff(du)
	return op.mgr.GetClient().Apply(ctx, client.ApplyConfigurationFromUnstructured(du),
		client.DryRunAll, client.FieldOwner(op.opts.Name), client.ForceOwnership)
}

// takeHandOff removes HandOff's annotation from du and returns its paths.
func takeHandOff(du *unstructured.Unstructured) [][]string {
	ann := du.GetAnnotations()
	v, ok := ann[handOffAnnotation]
	if !ok {
		return nil
	}
	delete(ann, handOffAnnotation)
	if len(ann) == 0 {
		unstructured.RemoveNestedField(du.Object, "metadata", "annotations")
	} else {
		du.SetAnnotations(ann)
	}
	var out [][]string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, ParsePath(p))
		}
	}
	return out
}

// handOff gives the fields in paths that du leaves out, and that
// Setpoint's manager owns in live, to the hand-off manager with their
// live values, before du is applied without them.
func (d *dispatcher[T]) handOff(ctx context.Context, cached client.Object, du *unstructured.Unstructured, paths [][]string) error {
	if len(paths) == 0 {
		return nil
	}
	live, err := asUnstructured(cached, du.GroupVersionKind())
	if err != nil {
		return err
	}
	fields := appliedFields(live, d.k.op.opts.Name)
	keep := &unstructured.Unstructured{Object: map[string]any{}}
	keep.SetGroupVersionKind(du.GroupVersionKind())
	keep.SetNamespace(du.GetNamespace())
	keep.SetName(du.GetName())
	any := false
	for _, p := range paths {
		if _, found, _ := unstructured.NestedFieldNoCopy(du.Object, p...); found {
			continue
		}
		v, found, _ := unstructured.NestedFieldNoCopy(live.Object, p...)
		if !found || !ownsPath(fields, p) {
			continue
		}
		if err := unstructured.SetNestedField(keep.Object, runtime.DeepCopyJSONValue(v), p...); err != nil {
			return Permanent(fmt.Errorf("hand off %s of %s %s: %w", strings.Join(p, "."), du.GetKind(), du.GetName(), err))
		}
		any = true
	}
	if !any {
		return nil
	}
	err = d.k.op.mgr.GetClient().Apply(ctx, client.ApplyConfigurationFromUnstructured(keep), client.FieldOwner(d.k.op.opts.Name+"-handoff"), client.ForceOwnership)
	if err != nil {
		return fmt.Errorf("hand off fields of %s %s/%s: %w", du.GetKind(), du.GetNamespace(), du.GetName(), err)
	}
	return nil
}

// ownsPath reports whether a field set holds the field at a map path.
func ownsPath(fields map[string]any, path []string) bool {
	node := fields
	for _, name := range path {
		next, ok := node["f:"+name].(map[string]any)
		if !ok {
			return false
		}
		node = next
	}
	return node != nil
}

// Reasons of a child the parent cannot have.
const ReasonChildRefused = "ChildRefused"

// childError is a child that cannot be had as desired: the API server
// refused it, or another controller has its name. It is reported on the
// parent (Observed.Refused, a Warning Event).
type childError struct {
	reason, msg string
	err         error
}

func (e *childError) Error() string { return e.err.Error() }
func (e *childError) Unwrap() error { return e.err }

// refused wraps the error of an apply that the API server answered with
// a refusal (invalid, forbidden, denied by a webhook) as a childError;
// other errors are returned as they are. Invalid and bad requests wait
// for the parent to change; the others are retried, as permissions and
// webhooks can be mended without touching the parent.
func refused(du *unstructured.Unstructured, wrapped, apiErr error) error {
	var status apierrors.APIStatus
	if !errors.As(apiErr, &status) {
		return wrapped
	}
	code := status.Status().Code
	if code < 400 || code >= 500 || code == 404 || code == 409 || code == 429 {
		return wrapped
	}
	if apierrors.IsInvalid(apiErr) || apierrors.IsBadRequest(apiErr) {
		wrapped = Permanent(wrapped)
	}
	return &childError{reason: ReasonChildRefused,
		msg: fmt.Sprintf("%s %s was refused: %s", du.GetKind(), du.GetName(), status.Status().Message), err: wrapped}
}

// replaceLists repairs a child that an apply cannot: apply merges lists
// by their keys, so an entry whose key someone changed by hand (a Service
// port edited from 80 to 8081) stays beside the desired one, and the
// merged object can be invalid (two ports named "http"). A JSON merge
// patch replaces lists whole, which puts the desired lists back; maps are
// still merged, so fields others own outside those lists are kept. The
// patch is conditional on the resourceVersion the pass saw.
func (d *dispatcher[T]) replaceLists(ctx context.Context, du *unstructured.Unstructured, rv string) error {
	patch := map[string]any{}
	for key, v := range du.Object {
		if key != "metadata" && key != "apiVersion" && key != "kind" {
			patch[key] = v
		}
	}
	patch["metadata"] = map[string]any{"resourceVersion": rv, "labels": du.GetLabels()}
	data, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	target := &unstructured.Unstructured{}
	target.SetGroupVersionKind(du.GroupVersionKind())
	target.SetNamespace(du.GetNamespace())
	target.SetName(du.GetName())
	if err := d.k.op.mgr.GetClient().Patch(ctx, target, client.RawPatch(types.MergePatchType, data), client.FieldOwner(d.k.op.opts.Name)); err != nil {
		return err
	}
	du.SetUID(target.GetUID())
	du.SetResourceVersion(target.GetResourceVersion())
	return nil
}

// prune deletes the children this parent controls that are no longer
// desired. Only objects with the parent's controller reference are
// candidates (found through controllerIndex), and the delete is
// conditional on the UID, so nothing else is ever touched.
func (d *dispatcher[T]) prune(ctx context.Context, parent *unstructured.Unstructured, wanted map[schema.GroupKind]map[string]bool) error {
	k := d.k
	var errs []error
	for _, gvk := range k.children.owns {
		list := k.op.newCachedList(gvk)
		// Read only: the cache's objects need no copy.
		if err := k.op.mgr.GetCache().List(ctx, list, client.InNamespace(parent.GetNamespace()),
			client.MatchingFields{controllerIndex: string(parent.GetUID())}, client.UnsafeDisableDeepCopy); err != nil {
			errs = append(errs, fmt.Errorf("list %s children: %w", gvk.Kind, err))
			continue
		}
		items, err := cachedItems(list)
		if err != nil {
			errs = append(errs, fmt.Errorf("list %s children: %w", gvk.Kind, err))
			continue
		}
		for _, c := range items {
			if wanted[gvk.GroupKind()][c.GetName()] || !controlledBy(c, parent.GetUID()) || c.GetDeletionTimestamp() != nil {
				continue
			}
			uid := c.GetUID()
			// A new object for the call: c is the cache's own.
			victim := &unstructured.Unstructured{}
			victim.SetGroupVersionKind(gvk)
			victim.SetNamespace(c.GetNamespace())
			victim.SetName(c.GetName())
			err := k.op.mgr.GetClient().Delete(ctx, victim, client.Preconditions{UID: &uid}, client.PropagationPolicy(metav1.DeletePropagationBackground))
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				errs = append(errs, fmt.Errorf("prune %s %s: %w", gvk.Kind, c.GetName(), err))
			}
		}
	}
	return errors.Join(errs...)
}

// writeStatus computes the status and writes it only when it changed.
// The write is conditional on the resourceVersion the pass read: another
// writer of the status (a daemon) may have written since, and a status
// computed from the older copy would revert its fields. On a conflict
// nothing is written; that other write's watch event brings a new pass.
func (d *dispatcher[T]) writeStatus(ctx context.Context, u *unstructured.Unstructured, obj T, observed *Observed) error {
	k := d.k
	st, err := k.children.status(ctx, obj, observed)
	if err != nil {
		return fmt.Errorf("status of %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	want := normalize(st)
	if wm, ok := want.(map[string]any); ok && len(wm) == 0 {
		want = nil
	}
	if reflect.DeepEqual(want, normalize(u.Object["status"])) {
		return nil
	}
	data, err := jsonPatch(
		jsonOp{Op: "replace", Path: "/metadata/resourceVersion", Value: u.GetResourceVersion()},
		jsonOp{Op: "add", Path: "/status", Value: want})
	if err != nil {
		return err
	}
	target := u.DeepCopy()
	err = k.op.mgr.GetClient().Status().Patch(ctx, target, client.RawPatch(types.JSONPatchType, data), client.FieldOwner(k.op.opts.Name))
	switch {
	case apierrors.IsNotFound(err):
		// Gone since the pass read it (a missing status subresource is
		// refused at Run, so it is not that).
		return nil
	case apierrors.IsConflict(err):
		k.logger().V(1).Info("status changed by another writer; recomputed on its event", "namespace", u.GetNamespace(), "name", u.GetName())
		return nil
	case err != nil:
		return fmt.Errorf("write status of %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	k.fresh.wrote(u.GetUID(), target.GetResourceVersion())
	return nil
}
