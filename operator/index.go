package operator

import (
	"context"
	"fmt"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
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
type Index[T client.Object] struct {
	op    *Operator
	field string
	keys  func(T) []string
	newT  func() T
	list  schema.GroupVersionKind
}

// NewIndex registers an index named name over kind T (a pointer type in
// the operator's scheme). keys returns the keys an object is found under.
func NewIndex[T client.Object](op *Operator, name string, keys func(T) []string) *Index[T] {
	newT, gvk := typeOf[T](op, "NewIndex")
	ix := &Index[T]{op: op, field: "setpoint.dev/index." + name, keys: keys, newT: newT, list: gvk.GroupVersion().WithKind(gvk.Kind + "List")}
	if !op.opts.Scheme.Recognizes(ix.list) {
		panic(fmt.Sprintf("setpoint: the scheme has no %s for index %s", ix.list.Kind, name))
	}
	op.register(ix)
	return ix
}

func (ix *Index[T]) setup(ctx context.Context, op *Operator) error {
	err := op.mgr.GetFieldIndexer().IndexField(ctx, ix.newT(), ix.field, func(o client.Object) []string {
		t, ok := o.(T)
		if !ok {
			return nil
		}
		return ix.keys(t)
	})
	if err != nil {
		return fmt.Errorf("index %s: %w", ix.field, err)
	}
	op.watch(func() client.Object { return ix.newT() })
	return nil
}

// Lookup returns the objects indexed under key.
func (ix *Index[T]) Lookup(ctx context.Context, key string) ([]T, error) {
	obj, err := ix.op.opts.Scheme.New(ix.list)
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", ix.field, err)
	}
	list, ok := obj.(client.ObjectList)
	if !ok {
		return nil, fmt.Errorf("index %s: %s is not a list", ix.field, ix.list.Kind)
	}
	if err := ix.op.mgr.GetCache().List(ctx, list, client.MatchingFields{ix.field: key}); err != nil {
		return nil, fmt.Errorf("index %s lookup %q: %w", ix.field, key, err)
	}
	items, err := metaItems(list)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(items))
	for _, it := range items {
		if t, ok := it.(T); ok {
			out = append(out, t)
		}
	}
	return out, nil
}

func metaItems(list client.ObjectList) ([]any, error) {
	objs, err := apimeta.ExtractList(list)
	if err != nil {
		return nil, fmt.Errorf("extract list: %w", err)
	}
	out := make([]any, len(objs))
	for i, o := range objs {
		out[i] = o
	}
	return out, nil
}
