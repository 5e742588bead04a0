package operator

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Index maps keys to the objects of one kind that declare them, kept up
// to date by the informer, like Kopf's indices. A handler of another kind
// reads it with Lookup: a cache lookup, never an API call.
//
//	users := operator.NewIndex(op, "configmap-users", func(d *appsv1.Deployment) []string {
//		return configMapsOf(d) // "namespace/name" of each ConfigMap it uses
//	})
//	...
//	deployments, err := users.Lookup(ctx, cm.Namespace+"/"+cm.Name)
//
// The index lives on the same cache as Watch and Children (each kind in
// one form, see form.go), so indexing a kind that is also watched does
// not cache it a second time.
type Index[T client.Object] struct {
	op    *Operator
	field string
	keys  func(T) []string
	newT  func() T
	gvk   schema.GroupVersionKind
}

// NewIndex registers an index named name over kind T (a pointer type in
// the operator's scheme). keys returns the keys an object is found under;
// an object that does not decode into T is found under none.
func NewIndex[T client.Object](op *Operator, name string, keys func(T) []string) *Index[T] {
	newT, gvk := typeOf[T](op, "NewIndex")
	ix := &Index[T]{op: op, field: "setpoint.dev/index." + name, keys: keys, newT: newT, gvk: gvk}
	op.register(ix)
	return ix
}

func (ix *Index[T]) proto() client.Object { return ix.op.newCached(ix.gvk) }

// decode returns o, an object of the cache, as T; a copy when copied
// (and only a copy is written to: o may be the cache's own).
func (ix *Index[T]) decode(o client.Object, copied bool) (T, bool) {
	if t, ok := o.(T); ok {
		if copied {
			t = t.DeepCopyObject().(T)
			t.GetObjectKind().SetGroupVersionKind(ix.gvk)
		}
		return t, true
	}
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		var zero T
		return zero, false
	}
	t, err := decodeAs(u, ix.newT, ix.gvk)
	return t, err == nil
}

func (ix *Index[T]) setup(ctx context.Context, op *Operator) error {
	err := op.mgr.GetFieldIndexer().IndexField(ctx, ix.proto(), ix.field, func(o client.Object) []string {
		// The cache's own object, read only (controller-runtime's
		// convention for index functions): not copied.
		t, ok := ix.decode(o, false)
		if !ok {
			return nil
		}
		return ix.keys(t)
	})
	if err != nil {
		return fmt.Errorf("index %s: %w", ix.field, err)
	}
	op.watch(ix.proto)
	return nil
}

// Lookup returns the objects indexed under key.
func (ix *Index[T]) Lookup(ctx context.Context, key string) ([]T, error) {
	list := ix.op.newCachedList(ix.gvk)
	if err := ix.op.mgr.GetCache().List(ctx, list, client.MatchingFields{ix.field: key}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("index %s lookup %q: %w", ix.field, key, err)
	}
	items, err := cachedItems(list)
	if err != nil {
		return nil, fmt.Errorf("index %s lookup %q: %w", ix.field, key, err)
	}
	out := make([]T, 0, len(items))
	for _, o := range items {
		// Not the caller's to change: the list holds the cache's objects.
		if t, ok := ix.decode(o, true); ok {
			out = append(out, t)
		}
	}
	return out, nil
}
