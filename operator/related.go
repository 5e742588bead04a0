package operator

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// WatchRelated makes events of another kind R wake objects of kind T:
// for every create, update and delete of an R, fn returns the keys of the
// T objects to handle again. Typical use: a parent whose children depend
// on a ConfigMap it references, with fn looking the ConfigMap up in an
// Index over the parents. Nothing is written for the related objects.
//
//	users := operator.NewIndex(op, "configmap-users", configMapsOf)
//	operator.WatchRelated(apps, func(ctx context.Context, cm *corev1.ConfigMap) []types.NamespacedName {
//		found, _ := users.Lookup(ctx, cm.Namespace+"/"+cm.Name)
//		return operator.Keys(found)
//	})
func WatchRelated[R client.Object, T client.Object](k *Kind[T], fn func(ctx context.Context, related R) []types.NamespacedName) {
	newR, gvk := typeOf[R](k.op, "WatchRelated")
	k.mu.Lock()
	defer k.mu.Unlock()
	k.related = append(k.related, func(c controller.Controller) error {
		h := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			r, ok := o.(R)
			if !ok {
				return nil
			}
			var reqs []reconcile.Request
			for _, key := range fn(ctx, r) {
				reqs = append(reqs, reconcile.Request{NamespacedName: key})
			}
			return reqs
		})
		if err := c.Watch(source.Kind[client.Object](k.op.mgr.GetCache(), newR(), h)); err != nil {
			return fmt.Errorf("watch related %s: %w", gvk.Kind, err)
		}
		return nil
	})
}

// Keys returns the namespaced names of objects, for WatchRelated.
func Keys[T client.Object](objs []T) []types.NamespacedName {
	out := make([]types.NamespacedName, 0, len(objs))
	for _, o := range objs {
		out = append(out, client.ObjectKeyFromObject(o))
	}
	return out
}
