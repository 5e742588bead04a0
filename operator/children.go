package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

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
// A child is compared with the cluster by Contains: every field the
// desired object sets must have that value. Set explicitly what you
// declare: a zero value the API server defaults to something else (a
// Service port's targetPort left 0) differs on every pass and is applied
// again each time.
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
	proto := &unstructured.Unstructured{}
	proto.SetGroupVersionKind(gvk)
	err := op.mgr.GetFieldIndexer().IndexField(ctx, proto, controllerIndex, func(o client.Object) []string {
		if ref := metav1.GetControllerOf(o); ref != nil {
			return []string{string(ref.UID)}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("index %s by controller: %w", gvk.Kind, err)
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
		proto := &unstructured.Unstructured{}
		proto.SetGroupVersionKind(gvk)
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
	objs   map[schema.GroupKind]map[string]*unstructured.Unstructured
}

func (o *Observed) add(u *unstructured.Unstructured) {
	gk := u.GroupVersionKind().GroupKind()
	if o.objs[gk] == nil {
		o.objs[gk] = map[string]*unstructured.Unstructured{}
	}
	o.objs[gk][u.GetName()] = u
}

// Get fills into (a typed object such as *appsv1.Deployment) with the
// observed child of that kind and name, and reports whether there is one.
func (o *Observed) Get(into client.Object, name string) (bool, error) {
	gvk, err := apiutil.GVKForObject(into, o.scheme)
	if err != nil {
		return false, err
	}
	u, ok := o.objs[gvk.GroupKind()][name]
	if !ok {
		return false, nil
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		return true, fmt.Errorf("decode %s %s: %w", gvk.Kind, name, err)
	}
	return true, nil
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
	observed := &Observed{scheme: k.op.opts.Scheme, objs: map[schema.GroupKind]map[string]*unstructured.Unstructured{}}
	wanted := map[schema.GroupKind]map[string]bool{}
	owned := map[schema.GroupKind]bool{}
	for _, gvk := range spec.owns {
		owned[gvk.GroupKind()] = true
	}
	var errs []error
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
			errs = append(errs, err)
			continue
		}
		if got != nil {
			observed.add(got)
		}
	}
	if err := d.prune(ctx, u, wanted); err != nil {
		errs = append(errs, err)
	}
	if spec.status != nil {
		if err := d.writeStatus(ctx, u, obj, observed); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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
// controller owns is left alone, with a Warning Event on the parent.
func (d *dispatcher[T]) applyChild(ctx context.Context, parent, du *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	k := d.k
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(du.GroupVersionKind())
	// Read only (compared, then handed to Observed, which converts), so
	// the cache's copy needs no deep copy.
	err := k.op.mgr.GetCache().Get(ctx, client.ObjectKeyFromObject(du), live, client.UnsafeDisableDeepCopy)
	if apierrors.IsNotFound(err) {
		// Not in the cache: make sure with the API server before creating,
		// so an object someone made a moment ago is not taken over.
		err = k.op.mgr.GetAPIReader().Get(ctx, client.ObjectKeyFromObject(du), live)
	}
	switch {
	case err == nil:
		if !controlledBy(live, parent.GetUID()) {
			msg := fmt.Sprintf("%s %s exists and is not controlled by this object; it is left alone", du.GetKind(), du.GetName())
			if k.events.allow(parent.GetUID()) {
				k.events.post(parent, corev1.EventTypeWarning, ReasonChildConflict, msg)
			}
			return nil, Permanent(errors.New(msg))
		}
		// A cached copy older than our own last apply is not drift.
		if Contains(live.Object, du.Object) || k.fresh.behind(live.GetUID(), live.GetResourceVersion()) {
			return live, nil
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
			return nil, fmt.Errorf("apply %s %s/%s: %w", du.GetKind(), du.GetNamespace(), du.GetName(), err)
		}
		if rerr := d.replaceLists(ctx, du, rv); rerr != nil {
			return nil, fmt.Errorf("apply %s %s/%s: %w (and replacing it: %w)", du.GetKind(), du.GetNamespace(), du.GetName(), err, rerr)
		}
	}
	k.fresh.wrote(du.GetUID(), du.GetResourceVersion())
	return du, nil
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
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		// Read only: the cache's objects need no copy.
		if err := k.op.mgr.GetCache().List(ctx, list, client.InNamespace(parent.GetNamespace()),
			client.MatchingFields{controllerIndex: string(parent.GetUID())}, client.UnsafeDisableDeepCopy); err != nil {
			errs = append(errs, fmt.Errorf("list %s children: %w", gvk.Kind, err))
			continue
		}
		for i := range list.Items {
			c := &list.Items[i]
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
	data, err := jsonPatch(jsonOp{Op: "add", Path: "/status", Value: want})
	if err != nil {
		return err
	}
	if err := k.op.mgr.GetClient().Status().Patch(ctx, u, client.RawPatch(types.JSONPatchType, data), client.FieldOwner(k.op.opts.Name)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("write status of %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	k.fresh.wrote(u.GetUID(), u.GetResourceVersion())
	return nil
}
