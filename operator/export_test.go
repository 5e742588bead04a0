package operator

import (
	"context"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Internals the external tests (which need testkit, which imports this
// package) drive directly.

// BookKeys returns the diff base annotation and the finalizer of op.
func BookKeys(op *Operator) (base, finalizer string) {
	return op.keys.base(), op.keys.finalizer()
}

// WriteBase writes base as the diff base of u, as a pass that read u
// writes it.
func WriteBase[T client.Object](ctx context.Context, k *Kind[T], u *unstructured.Unstructured, base string) error {
	p := &metaPatch{}
	p.setAnnotation(k.op.keys.base(), base)
	return (&dispatcher[T]{k: k}).apply(ctx, u, p)
}

// SetFinalizer adds (or removes) op's finalizer on u, as a pass that
// read u does, and reports whether u was found gone.
func SetFinalizer[T client.Object](ctx context.Context, k *Kind[T], u *unstructured.Unstructured, add bool) (gone bool, err error) {
	_, gone, err = (&dispatcher[T]{k: k}).finalizer(ctx, u, add)
	return gone, err
}

// LeanUnstructured is the caches' transform of an unstructured object.
var LeanUnstructured = leanUnstructured
