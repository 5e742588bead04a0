package operator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Children of a parent that is gone are Kubernetes' garbage collector's
// to delete, and it does, normally within a second. But it can miss one:
// under API server restarts, make chaos and make test found Deployments
// of deleted Apps left for minutes, never deleted, with the collector
// otherwise working. So Setpoint keeps a backstop for its own children:
//
//   - a parent made again under the name of a deleted one removes the
//     earlier one's children at once (they may hold the names of its
//     own, and they are garbage for sure: the name is taken, so their
//     controller is gone);
//   - children whose parent is gone and not made again are deleted if
//     they are still there Options.LeftoverGrace after Setpoint first saw them
//     so, which leaves the collector its turn.
//
// Only children whose one owner reference is that controller are
// touched: the collector keeps an object while any owner lives.

// controllerNameIndex indexes children by the group, kind and name of
// their controller, which outlive its UID.
const controllerNameIndex = "setpoint.dev/controller-name"

func controllerName(group, kind, name string) string { return group + "/" + kind + "/" + name }

// defaultLeftoverGrace is Options.LeftoverGrace's default.
const defaultLeftoverGrace = 30 * time.Second

// ReasonChildLeftOver is the Event reason on a parent when Setpoint
// deletes a child an earlier parent of its name left.
const ReasonChildLeftOver = "ChildLeftOver"

// leftovers lists the children controlled by a parent of this kind
// named key whose UID is not current ("" when no such parent exists).
func (d *dispatcher[T]) leftovers(ctx context.Context, key types.NamespacedName, current types.UID) ([]leftover, error) {
	k := d.k
	var out []leftover
	for _, gvk := range k.children.owns {
		list := k.op.newCachedList(gvk)
		if err := k.op.mgr.GetCache().List(ctx, list, client.InNamespace(key.Namespace),
			client.MatchingFields{controllerNameIndex: controllerName(k.gvk.Group, k.gvk.Kind, key.Name)}); err != nil {
			return nil, fmt.Errorf("list %s children of %s: %w", gvk.Kind, key, err)
		}
		items, err := cachedItems(list)
		if err != nil {
			return nil, fmt.Errorf("list %s children of %s: %w", gvk.Kind, key, err)
		}
		for _, c := range items {
			refs := c.GetOwnerReferences()
			if c.GetDeletionTimestamp() == nil && len(refs) == 1 && refs[0].UID != current {
				out = append(out, leftover{gvk: gvk, obj: c})
			}
		}
	}
	return out, nil
}

// leftover is a child left by an earlier parent, of kind gvk (a typed
// object from the cache does not carry its kind).
type leftover struct {
	gvk schema.GroupVersionKind
	obj client.Object
}

// removeEarlier deletes the children of an earlier parent of u's name.
func (d *dispatcher[T]) removeEarlier(ctx context.Context, u *unstructured.Unstructured) error {
	found, err := d.leftovers(ctx, types.NamespacedName{Namespace: u.GetNamespace(), Name: u.GetName()}, u.GetUID())
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range found {
		if err := d.removeLeftover(ctx, u, c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sweepGone deals with the children of key's parent, which is not in the
// cache: it returns when to look again while they are in their grace,
// and deletes them after it if the API server confirms the parent gone.
func (d *dispatcher[T]) sweepGone(ctx context.Context, key types.NamespacedName) (time.Duration, error) {
	k := d.k
	if k.children == nil {
		return 0, nil
	}
	found, err := d.leftovers(ctx, key, "")
	if err != nil || len(found) == 0 {
		k.leftoverSeen.Delete(key)
		return 0, err
	}
	grace := cmp.Or(k.op.opts.LeftoverGrace, defaultLeftoverGrace)
	first, _ := k.leftoverSeen.LoadOrStore(key, time.Now())
	if wait := grace - time.Since(first.(time.Time)); wait > 0 {
		return wait, nil
	}
	// The cache may lag: a parent made a moment ago is not in it yet.
	live := k.newUnstructured()
	err = k.op.mgr.GetAPIReader().Get(ctx, key, live)
	switch {
	case apierrors.IsNotFound(err):
		live = nil
	case err != nil:
		return 0, fmt.Errorf("get %s %s: %w", k.gvk.Kind, key, err)
	}
	var errs []error
	for _, c := range found {
		if live != nil && live.GetUID() == c.obj.GetOwnerReferences()[0].UID {
			continue // its parent is there after all
		}
		if err := d.removeLeftover(ctx, live, c); err != nil {
			errs = append(errs, err)
		}
	}
	k.leftoverSeen.Delete(key)
	return 0, errors.Join(errs...)
}

// removeLeftover deletes a child left by an earlier parent, on the
// condition that it is still the copy judged. parent, the parent that
// has the name now, gets an Event; nil if none.
func (d *dispatcher[T]) removeLeftover(ctx context.Context, parent *unstructured.Unstructured, l leftover) error {
	k := d.k
	c := l.obj
	uid, rv := c.GetUID(), c.GetResourceVersion()
	victim := &unstructured.Unstructured{}
	victim.SetGroupVersionKind(l.gvk)
	victim.SetNamespace(c.GetNamespace())
	victim.SetName(c.GetName())
	err := k.op.mgr.GetClient().Delete(ctx, victim, client.Preconditions{UID: &uid, ResourceVersion: &rv}, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone already, or changed: the next pass looks again
	}
	what := fmt.Sprintf("%s %s", l.gvk.Kind, c.GetName())
	earlier := c.GetOwnerReferences()[0]
	if err != nil {
		return fmt.Errorf("delete %s left by %s %s (uid %s): %w", what, earlier.Kind, earlier.Name, earlier.UID, err)
	}
	msg := fmt.Sprintf("%s was left by an earlier %s %s (uid %s), which is gone; deleted it", what, earlier.Kind, earlier.Name, earlier.UID)
	k.logger().Info(msg, "namespace", c.GetNamespace())
	if parent != nil && k.events.allow(parent.GetUID()) {
		k.events.post(parent, corev1.EventTypeNormal, ReasonChildLeftOver, msg)
	}
	return nil
}
