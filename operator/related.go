package operator

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/setpoint-dev/setpoint/operator/configdata"
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
			if u, isU := o.(*unstructured.Unstructured); isU && !ok {
				// A kind the caches keep unstructured (form.go).
				var err error
				if r, err = decodeAs(u, newR, gvk); err != nil {
					return nil
				}
			} else if !ok {
				return nil
			}
			var reqs []reconcile.Request
			for _, key := range fn(ctx, r) {
				reqs = append(reqs, reconcile.Request{NamespacedName: key})
			}
			return reqs
		})
		if err := c.Watch(source.Kind[client.Object](k.op.mgr.GetCache(), k.op.newCached(gvk), h)); err != nil {
			return fmt.Errorf("watch related %s: %w", gvk.Kind, err)
		}
		return nil
	})
}

// WatchRelatedMetadata is WatchRelated through a metadata-only watch of
// the kind gvk: fn sees names, labels, annotations and resourceVersions,
// and the operator keeps no more of these objects than that. For kinds
// whose objects are big and many where only a few matter (ConfigMaps and
// Secrets: read the ones that matter with ConfigReader).
func WatchRelatedMetadata[T client.Object](k *Kind[T], gvk schema.GroupVersionKind, fn func(ctx context.Context, related *metav1.PartialObjectMetadata) []types.NamespacedName) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.related = append(k.related, func(c controller.Controller) error {
		h := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			m, ok := o.(*metav1.PartialObjectMetadata)
			if !ok {
				return nil
			}
			var reqs []reconcile.Request
			for _, key := range fn(ctx, m) {
				reqs = append(reqs, reconcile.Request{NamespacedName: key})
			}
			return reqs
		})
		proto := &metav1.PartialObjectMetadata{}
		proto.SetGroupVersionKind(gvk)
		if err := c.Watch(source.Kind[client.Object](k.op.mgr.GetCache(), proto, h)); err != nil {
			return fmt.Errorf("watch related %s metadata: %w", gvk.Kind, err)
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

// WatchConfig makes a change in a ConfigMap or Secret wake the objects of
// kind T that read it: refs lists what one object reads (typically
// configdata.Refs of its uses), and an index named name answers "who
// reads this one" from the cache. With configdata.Key.Hash of what the
// object reads on its pod templates, an edit rolls exactly the workloads
// that read the edited keys. The watches are of metadata only: read the
// content through ConfigReader.
func WatchConfig[T client.Object](k *Kind[T], name string, refs func(T) []configdata.Ref) {
	users := NewIndex(k.op, name, func(o T) []string {
		rs := refs(o)
		keys := make([]string, len(rs))
		for i, r := range rs {
			keys[i] = r.Key(o.GetNamespace())
		}
		return keys
	})
	wake := func(ctx context.Context, kind string, o client.Object) []types.NamespacedName {
		found, err := users.Lookup(ctx, configdata.Ref{Kind: kind, Name: o.GetName()}.Key(o.GetNamespace()))
		if err != nil {
			return nil
		}
		return Keys(found)
	}
	for _, kind := range []string{configdata.KindConfigMap, configdata.KindSecret} {
		WatchRelatedMetadata(k, corev1.SchemeGroupVersion.WithKind(kind), func(ctx context.Context, m *metav1.PartialObjectMetadata) []types.NamespacedName {
			return wake(ctx, kind, m)
		})
	}
}
