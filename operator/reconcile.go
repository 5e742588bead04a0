package operator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ReconcileFunc is a level-triggered handler: it looks at the object as
// it is now, acts if the world differs from what the object asks for, and
// returns how long until it wants to look again (0: at the next event).
// It runs on every pass, so when nothing differs it must write nothing.
type ReconcileFunc[T client.Object] func(ctx context.Context, p *Pass[T]) (time.Duration, error)

// Pass is what a ReconcileFunc receives.
type Pass[T client.Object] struct {
	// Object is the object as the cache has it at the start of the pass.
	Object T
	// Log is bound to the object; its Info and Error lines are also
	// posted as Events on it (see Options.EventLevel).
	Log logr.Logger

	d *dispatcher[T]
	u *unstructured.Unstructured
}

// Event posts an Event on the object with a reason of the handler's own
// (for example "Reloaded"), not rate-limited: post one per action, not
// one per pass.
func (p *Pass[T]) Event(eventType, reason, message string) {
	p.d.k.events.post(p.u, eventType, reason, message)
}

// Patch writes to the object itself. Writes made this way are
// remembered, so the next pass never acts on a cached copy from before
// them (which would make it act twice).
func (p *Pass[T]) Patch(ctx context.Context, pt types.PatchType, data []byte) error {
	return p.d.patch(ctx, p.u, pt, data)
}

// Reconcile adds a level-triggered handler: fn runs on every pass over an
// object (its own watch events, events of related kinds it is woken by
// through WatchRelated, resyncs), after the children are applied and
// before change handlers. Nothing is kept on the object for it.
//
// Errors: Temporary(err, d) looks again after d; Permanent(err) is
// posted as a Warning Event and waits for the next event; any other
// error is retried with the work queue's backoff.
func (k *Kind[T]) Reconcile(fn ReconcileFunc[T]) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.reconcilers = append(k.reconcilers, fn)
}

// reconcileLevel runs the level-triggered handlers and returns the
// earliest look-again they asked for.
func (d *dispatcher[T]) reconcileLevel(ctx context.Context, u *unstructured.Unstructured, obj T, log logr.Logger) (time.Duration, error) {
	k := d.k
	k.mu.Lock()
	fns := k.reconcilers
	k.mu.Unlock()
	var after time.Duration
	soonest := func(d time.Duration) {
		if d > 0 && (after == 0 || d < after) {
			after = d
		}
	}
	var errs []error
	for _, fn := range fns {
		p := &Pass[T]{Object: obj, Log: k.events.logger(log, u), d: d, u: u}
		again, err := callReconcile(ctx, fn, p)
		soonest(again)
		var tmp *TemporaryError
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return after, nil // stopping: the next start looks again
		case errors.As(err, &tmp):
			log.Error(err, "reconcile failed; will retry", "in", tmp.After)
			soonest(max(tmp.After, MinRetryDelay))
		case IsPermanent(err):
			// Every pass over the object fails the same way (status
			// updates of a workload bring many): the per-object bucket
			// keeps the Warning from flooding.
			if k.events.allow(u.GetUID()) {
				k.events.post(u, corev1.EventTypeWarning, ReasonFailed, fmt.Sprintf("Reconcile failed, not retried until the object changes: %v", err))
			}
			log.Error(err, "reconcile failed; not retried until the object changes")
		default:
			errs = append(errs, err)
		}
	}
	return after, errors.Join(errs...)
}

// callReconcile calls fn, turning a panic into an error.
func callReconcile[T client.Object](ctx context.Context, fn ReconcileFunc[T], p *Pass[T]) (after time.Duration, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError{r}
		}
	}()
	return fn(logr.NewContext(ctx, p.Log), p)
}
