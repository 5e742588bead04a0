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
// The index lives on the same cache as Watch (objects kept as
// unstructured), so indexing a kind that is also watched does not cache
// it a second time.
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

func (ix *Index[T]) proto() client.Object {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(ix.gvk)
	return u
}

func (ix *Index[T]) decode(u *unstructured.Unstructured) (T, bool) {
	t, err := decodeAs(u, ix.newT, ix.gvk)
	return t, err == nil
}

func (ix *Index[T]) setup(ctx context.Context, op *Operator) error {
	err := op.mgr.GetFieldIndexer().IndexField(ctx, ix.proto(), ix.field, func(o client.Object) []string {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			return nil
		}
		t, ok := ix.decode(u)
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
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(ix.gvk.GroupVersion().WithKind(ix.gvk.Kind + "List"))
	if err := ix.op.mgr.GetCache().List(ctx, list, client.MatchingFields{ix.field: key}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("index %s lookup %q: %w", ix.field, key, err)
	}
	out := make([]T, 0, len(list.Items))
	for i := range list.Items {
		if t, ok := ix.decode(&list.Items[i]); ok {
			out = append(out, t)
		}
	}
	return out, nil
}
