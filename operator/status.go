package operator

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// PatchStatus writes the status of after, as a merge patch from before
// (the copy it was computed from), for writers of the status other than
// the Status function: a daemon's decisions, say. The write is
// conditional on before's resourceVersion, so it never reverts a newer
// status someone else wrote; on a conflict it fails with an error that
// apierrors.IsConflict recognises, and the caller computes again from a
// fresh copy. The Status function's own writes are conditional the same
// way, so neither writer can undo the other's newer fields.
//
// A pass never acts on a cached copy older than this write (as with the
// library's own writes), so the children are not built from a status
// that has just been replaced.
func (k *Kind[T]) PatchStatus(ctx context.Context, before, after T) error {
	patch := client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})
	if err := k.op.mgr.GetClient().Status().Patch(ctx, after, patch, client.FieldOwner(k.op.opts.Name)); err != nil {
		return fmt.Errorf("write status of %s %s/%s: %w", k.gvk.Kind, after.GetNamespace(), after.GetName(), err)
	}
	k.fresh.wrote(after.GetUID(), after.GetResourceVersion())
	return nil
}
