package operator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// dispatcher is the reconciler of one kind: it decides the cause of a
// pass, runs the due handlers and records their progress on the object.
type dispatcher[T client.Object] struct{ k *Kind[T] }

var _ reconcile.Reconciler = (*dispatcher[client.Object])(nil)

func (d *dispatcher[T]) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	res, err := d.reconcile(ctx, req)
	if err != nil && ctx.Err() != nil {
		// Stopping: whatever was cut short is still due, and the next
		// start picks it up. Not an error worth a log line.
		return reconcile.Result{}, nil
	}
	return res, err
}

func (d *dispatcher[T]) reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	k := d.k
	u, err := k.read(ctx, k.op.mgr.GetCache(), req.NamespacedName)
	if err != nil {
		if apierrors.IsNotFound(err) {
			k.tasks.stop(req.NamespacedName)
			k.unstored.forget(req.NamespacedName)
			after, err := d.sweepGone(ctx, req.NamespacedName)
			return reconcile.Result{RequeueAfter: after}, err
		}
		return reconcile.Result{}, fmt.Errorf("get %s %s: %w", k.gvk.Kind, req.NamespacedName, err)
	}
	k.unstored.overlay(u)
	if !k.matches(u) {
		k.tasks.stop(req.NamespacedName)
		return reconcile.Result{}, d.release(ctx, u)
	}
	if k.fresh.behind(u.GetUID(), u.GetResourceVersion()) {
		// The cache has not caught up with our own last write: acting on
		// it would re-run handlers that already succeeded. The watch event
		// of that write brings the object back; the requeue is a safety net.
		return reconcile.Result{RequeueAfter: 100 * time.Millisecond}, nil
	}
	log := k.logger().WithValues("namespace", u.GetNamespace(), "name", u.GetName())
	obj, err := k.decode(u)
	if err != nil {
		// Not retried: only a change to the object can fix it, and that
		// change brings it back here.
		k.events.post(u, corev1.EventTypeWarning, ReasonDecodeFailed,
			fmt.Sprintf("Setpoint cannot read this %s and skips it until it changes: %v", k.gvk.Kind, err))
		log.Error(err, "cannot decode object; skipped")
		return reconcile.Result{}, nil
	}
	if !k.predicatesMatch(obj) {
		k.tasks.stop(req.NamespacedName)
		return reconcile.Result{}, d.release(ctx, u)
	}
	if u.GetDeletionTimestamp() != nil {
		// Timers and daemons never hold up a deletion.
		k.tasks.stop(req.NamespacedName)
		return d.deleting(ctx, u, obj, log)
	}
	fin := k.op.keys.finalizer()
	has := slices.Contains(u.GetFinalizers(), fin)
	switch need := k.needsFinalizer(); {
	case need && !has:
		var gone bool
		if u, gone, err = d.finalizer(ctx, u, true); err != nil {
			return reconcile.Result{}, err
		} else if gone {
			// Deleted before it had the finalizer: Kubernetes has let it
			// go, so no delete handler can run for it, and no other
			// handler may either (a create handler would make what no
			// delete handler cleans up).
			k.tasks.stop(req.NamespacedName)
			return reconcile.Result{}, nil
		}
		if obj, err = k.decode(u); err != nil {
			return reconcile.Result{}, fmt.Errorf("decode %s: %w", req.NamespacedName, err)
		}
	case !need && has:
		// A delete handler was removed from the operator: let go.
		var gone bool
		if u, gone, err = d.finalizer(ctx, u, false); err != nil {
			return reconcile.Result{}, err
		} else if gone {
			k.tasks.stop(req.NamespacedName)
			return reconcile.Result{}, nil
		}
	}
	k.tasks.ensure(u)
	var convergeErr error
	if k.children != nil {
		convergeErr = d.retryable(d.converge(ctx, u, obj), log)
	}
	again, levelErr := d.reconcileLevel(ctx, u, obj, log)
	res, err := d.changes(ctx, u, obj, log)
	if again > 0 && (res.RequeueAfter == 0 || again < res.RequeueAfter) {
		res.RequeueAfter = again
	}
	return res, errors.Join(convergeErr, levelErr, err)
}

// release removes our finalizer from an object that has left the
// Watch's filters (labels, annotations, When): it is no longer ours to
// hold, and one deleted later must not wait for ever on handlers that
// will not run for it. As in Kopf, its delete handlers do not run. Only
// the Watch whose delete handlers put the finalizer there lets it go.
func (d *dispatcher[T]) release(ctx context.Context, u *unstructured.Unstructured) error {
	if !d.k.needsFinalizer() || !slices.Contains(u.GetFinalizers(), d.k.op.keys.finalizer()) {
		return nil
	}
	if _, gone, err := d.finalizer(ctx, u, false); err != nil || gone {
		return err
	}
	if u.GetDeletionTimestamp() != nil {
		d.k.fresh.released(u.GetUID())
	}
	return nil
}

// retryable logs the permanent parts of err (they wait for the object to
// change) and returns the rest, to be retried with backoff.
func (d *dispatcher[T]) retryable(err error, log logr.Logger) error {
	if err == nil {
		return nil
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var retry []error
	for _, e := range errs {
		if IsPermanent(e) {
			log.Error(e, "not retried until the object changes")
			continue
		}
		retry = append(retry, e)
	}
	return errors.Join(retry...)
}

// flow is one pass's set of due handlers with what they receive.
type flow[T client.Object] struct {
	reason Reason
	due    []*changeHandler[T]
	base   map[string]any // essence last handled (nil on create)
	ess    map[string]any // essence now
	diff   Diff
	flowID string
}

func (d *dispatcher[T]) changes(ctx context.Context, u *unstructured.Unstructured, obj T, log logr.Logger) (reconcile.Result, error) {
	k := d.k
	hasCreate, hasUpdate, hasResume := k.has(Create), k.has(Update), k.has(Resume)
	if !hasCreate && !hasUpdate && !hasResume {
		return reconcile.Result{}, nil
	}
	ann := u.GetAnnotations()
	ess := k.op.keys.essence(u)
	f := flow[T]{ess: ess, flowID: digest(ess)[:16]}
	baseStr, hasBase := ann[k.op.keys.base()]
	_, seen := k.resumed.Load(u.GetUID())

	if (hasCreate || hasUpdate) && !hasBase {
		f.reason = Create
		f.diff = ComputeDiff(nil, ess)
		for _, h := range k.handlers {
			if h.reason == Create || (h.field != nil && lookup(ess, h.field) != nil) {
				f.due = append(f.due, h)
			}
		}
	} else {
		if !seen && hasResume {
			f.reason = Resume
			for _, h := range k.handlers {
				if h.reason == Resume {
					f.due = append(f.due, h)
				}
			}
		}
		if hasUpdate && hasBase {
			var ok bool
			if f.base, ok = decodeJSON([]byte(baseStr)).(map[string]any); !ok {
				log.Error(nil, "diff base unreadable; treating the object as changed")
				f.base = map[string]any{}
			}
			o, n := comparableEssences(f.base, ess)
			if f.diff = ComputeDiff(o, n); len(f.diff) > 0 {
				if f.reason == "" {
					f.reason = Update
				}
				for _, h := range k.handlers {
					if h.reason == Update && (h.field == nil || len(f.diff.Under(h.field)) > 0) {
						f.due = append(f.due, h)
					}
				}
			}
		}
		if len(f.due) == 0 && len(f.diff) == 0 {
			k.resumed.Store(u.GetUID(), struct{}{})
			// A flow that finished under another version may have left
			// progress behind only if it crashed mid-write; clean it up.
			if _, ok := ann[k.op.keys.progress()]; ok {
				p := &metaPatch{del: []string{k.op.keys.progress()}}
				return reconcile.Result{}, d.apply(ctx, u, p)
			}
			return reconcile.Result{}, nil
		}
	}
	return d.run(ctx, u, obj, f, log)
}

// run executes the due handlers of a flow in order and records the
// outcome. Each attempt is written down before its call (with the outcome
// of the one before), so a crash never makes a handler that succeeded run
// again and a call that kills the process is counted; a flow of one
// handler that succeeds at the first attempt costs two writes.
func (d *dispatcher[T]) run(ctx context.Context, u *unstructured.Unstructured, obj T, f flow[T], log logr.Logger) (reconcile.Result, error) {
	k := d.k
	keys := k.op.keys
	prog := d.loadProgress(u, log)
	if prog == nil || prog.Flow != f.flowID || prog.Cause != string(f.reason) {
		prog = &progress{Cause: string(f.reason), Flow: f.flowID, Handlers: map[string]*handlerState{}}
	}
	next, err := d.runDue(ctx, u, obj, f, prog, log)
	if err != nil {
		return reconcile.Result{}, err
	}
	p := &metaPatch{}
	if next.IsZero() && allFinished(f.due, prog) {
		if k.has(Create) || k.has(Update) {
			base := "{}" // a kind without update handlers needs only "handled"
			if k.has(Update) {
				if base, err = encodeBase(f.ess, keys.baseBudget(u)); err != nil {
					return reconcile.Result{}, err
				}
			}
			p.setAnnotation(keys.base(), base)
		}
		p.del = []string{keys.progress()}
		if err := d.apply(ctx, u, p); err != nil {
			return reconcile.Result{}, err
		}
		k.resumed.Store(u.GetUID(), struct{}{})
		return reconcile.Result{}, nil
	}
	p.setAnnotation(keys.progress(), prog.encode())
	if err := d.apply(ctx, u, p); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: max(time.Until(next), time.Millisecond)}, nil
}

// runDue runs every due handler that is neither finished nor delayed, and
// returns the earliest time a delayed one is due (zero if none).
func (d *dispatcher[T]) runDue(ctx context.Context, u *unstructured.Unstructured, obj T, f flow[T], prog *progress, log logr.Logger) (time.Time, error) {
	var next time.Time
	for _, h := range f.due {
		st := prog.state(h.cfg.id)
		if st.finished() {
			continue
		}
		now := time.Now()
		if st.Delayed != nil && st.Delayed.After(now) {
			if next.IsZero() || st.Delayed.Before(next) {
				next = *st.Delayed
			}
			continue
		}
		if ctx.Err() != nil {
			// Stopping: start nothing new. The work is still due for the
			// next operator, as nothing records it finished.
			return next, d.stopped(ctx, u, prog)
		}
		if st.Running && d.crashed(u, h, st, log) {
			// The last call never returned: counted, and backed off.
			if st.finished() || (st.Delayed != nil && st.Delayed.After(now)) {
				if st.Delayed != nil && !st.finished() && (next.IsZero() || st.Delayed.Before(next)) {
					next = *st.Delayed
				}
				continue
			}
		}
		// The attempt is on the object before the call, with the outcome
		// of the one before it: a call that kills the process still
		// counts towards Retries(n), so a crash loop ends.
		st.Running = true
		p := &metaPatch{}
		p.setAnnotation(d.k.op.keys.progress(), prog.encode())
		if err := d.apply(ctx, u, p); err != nil {
			st.Running = false
			return next, err
		}
		d.call(ctx, u, obj, h, f, st, log)
		st.Running = false
		if ctx.Err() != nil {
			// Stopped during the call, maybe the flow's last: its
			// outcome cannot be written with ctx.
			return next, d.stopped(ctx, u, prog)
		}
		if st.Delayed != nil && !st.finished() && (next.IsZero() || st.Delayed.Before(next)) {
			next = *st.Delayed
		}
	}
	return next, nil
}

// stopped writes the progress of a flow the operator stops in, with no
// call marked running, so the next operator does not count a crash that
// was a clean stop; it returns ctx's error.
func (d *dispatcher[T]) stopped(ctx context.Context, u *unstructured.Unstructured, prog *progress) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	p := &metaPatch{}
	p.setAnnotation(d.k.op.keys.progress(), prog.encode())
	_ = d.apply(sctx, u, p) // best effort: the next operator would count one attempt
	return ctx.Err()
}

// crashed records, for a handler whose last call never returned (the
// process died in it), a failed attempt: Retries(n) and the backoff apply
// as to an error. It reports whether the state changed.
func (d *dispatcher[T]) crashed(u *unstructured.Unstructured, h *changeHandler[T], st *handlerState, log logr.Logger) bool {
	st.Running = false
	st.Retries++
	st.Message = "the operator stopped during the call (a crash or a kill)"
	id := h.cfg.id
	if h.cfg.retries > 0 && st.Retries >= h.cfg.retries {
		st.Failure, st.Delayed = true, nil
		st.Message = fmt.Sprintf("gave up after %d attempts: %s", st.Retries, st.Message)
		log.Error(errors.New(st.Message), "handler failed permanently", "handler", id, "attempts", st.Retries)
		d.k.events.post(u, corev1.EventTypeWarning, ReasonFailed, fmt.Sprintf("Handler %s failed permanently: %s", id, st.Message))
		return true
	}
	at := time.Now().Add(h.cfg.backoff.Delay(st.Retries))
	st.Delayed = &at
	log.Error(errors.New(st.Message), "handler did not return; will retry", "handler", id, "attempt", st.Retries)
	d.k.events.post(u, corev1.EventTypeWarning, ReasonRetrying, fmt.Sprintf("Handler %s did not return (attempt %d): %s", id, st.Retries, st.Message))
	return true
}

func allFinished[T client.Object](due []*changeHandler[T], prog *progress) bool {
	for _, h := range due {
		if st, ok := prog.Handlers[h.cfg.id]; !ok || !st.finished() {
			return false
		}
	}
	return true
}

// call runs one handler once and updates its state.
func (d *dispatcher[T]) call(ctx context.Context, u *unstructured.Unstructured, obj T, h *changeHandler[T], f flow[T], st *handlerState, log logr.Logger) {
	k := d.k
	id := h.cfg.id
	now := time.Now()
	if st.Started == nil {
		st.Started = &now
	}
	hlog := k.events.logger(log.WithValues("handler", id), u)
	c := &Cause[T]{Reason: h.reason, Object: obj, Retry: st.Retries, Started: *st.Started, Log: hlog}
	switch {
	case h.field != nil:
		c.Old, c.New, c.Diff = lookup(f.base, h.field), lookup(f.ess, h.field), f.diff.Under(h.field)
		if f.reason == Create {
			c.Reason = Create
		}
	case h.reason == Update || h.reason == Create:
		c.Old, c.New, c.Diff = mapOrNil(f.base), f.ess, f.diff
	default:
		c.New = f.ess
	}

	var err error
	hctx := ctx
	if h.cfg.timeout > 0 {
		deadline := st.Started.Add(h.cfg.timeout)
		if !now.Before(deadline) {
			err = Permanent(fmt.Errorf("timed out after %s", h.cfg.timeout))
		}
		var cancel context.CancelFunc
		hctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	if err == nil {
		start := time.Now()
		err = invoke(logr.NewContext(hctx, hlog), h.fn, c)
		handlerDuration.WithLabelValues(k.op.opts.Name, k.gvk.Kind, id).Observe(time.Since(start).Seconds())
		if err != nil && h.cfg.timeout > 0 && hctx.Err() != nil && ctx.Err() == nil {
			err = Permanent(fmt.Errorf("timed out after %s: %w", h.cfg.timeout, err))
		}
	}
	labels := []string{k.op.opts.Name, k.gvk.Kind, id}
	var tmp *TemporaryError
	switch {
	case err == nil:
		st.Success, st.Delayed, st.Message = true, nil, ""
		handlerCalls.WithLabelValues(append(labels, "success")...).Inc()
		k.events.post(u, corev1.EventTypeNormal, ReasonSucceeded, fmt.Sprintf("Handler %s succeeded.", id))
		return
	case ctx.Err() != nil:
		// The operator is stopping: not the handler's failure. It runs
		// again on the next start, as it is not recorded as finished.
		st.Delayed = &now
		return
	}
	handlerErrors.WithLabelValues(labels...).Inc()
	st.Retries++
	st.Message = err.Error()
	switch {
	case IsPermanent(err):
		st.Failure, st.Delayed = true, nil
	case h.cfg.retries > 0 && st.Retries >= h.cfg.retries:
		st.Failure, st.Delayed = true, nil
		st.Message = fmt.Sprintf("gave up after %d attempts: %v", st.Retries, err)
	}
	if st.Failure {
		handlerCalls.WithLabelValues(append(labels, "failure")...).Inc()
		log.Error(err, "handler failed permanently", "handler", id, "attempts", st.Retries)
		k.events.post(u, corev1.EventTypeWarning, ReasonFailed, fmt.Sprintf("Handler %s failed permanently: %s", id, st.Message))
		return
	}
	delay := h.cfg.backoff.Delay(st.Retries)
	if errors.As(err, &tmp) {
		delay = max(tmp.After, MinRetryDelay)
	}
	// The delay runs from the failure, not from the attempt's start.
	at := time.Now().Add(delay)
	st.Delayed = &at
	log.Error(err, "handler failed; will retry", "handler", id, "attempt", st.Retries, "in", delay)
	handlerCalls.WithLabelValues(append(labels, "retry")...).Inc()
	handlerRetries.WithLabelValues(labels...).Inc()
	k.events.post(u, corev1.EventTypeWarning, ReasonRetrying, fmt.Sprintf("Handler %s failed (attempt %d), retrying in %s: %v", id, st.Retries, delay.Round(time.Millisecond), err))
}

func mapOrNil(m map[string]any) any {
	if m == nil {
		return nil
	}
	return m
}

// invoke calls a handler, turning a panic into an error.
func invoke[T client.Object](ctx context.Context, fn HandlerFunc[T], c *Cause[T]) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError{r}
		}
	}()
	return fn(ctx, c)
}

func (d *dispatcher[T]) loadProgress(u *unstructured.Unstructured, log logr.Logger) *progress {
	s, ok := u.GetAnnotations()[d.k.op.keys.progress()]
	if !ok {
		return nil
	}
	p, err := decodeProgress(s)
	if err != nil {
		log.Error(err, "progress annotation unreadable; starting the flow afresh")
		return nil
	}
	return p
}

// deleting runs the delete handlers of an object being deleted, then lets
// it go by removing the finalizer. Handlers that failed permanently count
// as finished: the Warning Event says so, and the object is not held
// forever.
func (d *dispatcher[T]) deleting(ctx context.Context, u *unstructured.Unstructured, obj T, log logr.Logger) (reconcile.Result, error) {
	k := d.k
	if !slices.Contains(u.GetFinalizers(), k.op.keys.finalizer()) {
		k.optionalDeletes(ctx, u)
		return reconcile.Result{}, nil
	}
	f := flow[T]{reason: Delete, ess: k.op.keys.essence(u), flowID: "delete"}
	for _, h := range k.handlers {
		if h.reason == Delete {
			f.due = append(f.due, h)
		}
	}
	prog := d.loadProgress(u, log)
	if prog == nil || prog.Cause != string(Delete) {
		prog = &progress{Cause: string(Delete), Flow: f.flowID, Handlers: map[string]*handlerState{}}
	}
	next, err := d.runDue(ctx, u, obj, f, prog, log)
	if err != nil {
		return reconcile.Result{}, err
	}
	p := &metaPatch{}
	p.setAnnotation(k.op.keys.progress(), prog.encode())
	if next.IsZero() && allFinished(f.due, prog) {
		if _, _, err := d.finalizer(ctx, u, false); err != nil {
			// Keep the handlers' success, so the retry of this pass
			// does not run them again.
			return reconcile.Result{}, errors.Join(err, d.apply(ctx, u, p))
		}
		// Removing the last finalizer deletes the object, and the answer
		// carries the resourceVersion it had before: remember the release
		// so a stale cached copy is not handled a second time.
		k.fresh.released(u.GetUID())
		return reconcile.Result{}, nil
	}
	if err := d.apply(ctx, u, p); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: max(time.Until(next), time.Millisecond)}, nil
}

// apply writes a patch of bookkeeping, if it changes anything, and
// refreshes u from the answer.
func (d *dispatcher[T]) apply(ctx context.Context, u *unstructured.Unstructured, p *metaPatch) error {
	if data := p.annotations(u); data != nil {
		switch err := d.patch(ctx, u, types.MergePatchType, data); {
		case tooLarge(err):
			d.unstorable(u, p)
		case err != nil:
			return err
		default:
			d.k.unstored.stored(u, p)
			d.k.unstored.overlay(u)
		}
	}
	if p.addFin || p.removeFin {
		if data := p.finalizers(u); data != nil {
			return d.patch(ctx, u, types.JSONPatchType, data)
		}
	}
	return nil
}

// unstorable keeps in memory the bookkeeping the API server refused for
// size (unstored), and says so once per object: a Warning Event and a log
// line. The message does not quote the API server's answer, which may
// echo the object.
func (d *dispatcher[T]) unstorable(u *unstructured.Unstructured, p *metaPatch) {
	if b, ok := p.set[d.k.op.keys.base()]; ok && b != "{}" {
		// In memory the base need not fit the object: keep old values for
		// the field handlers. The pass's object is the one its flow ran for.
		if full, err := encodeBase(d.k.op.keys.essence(u), maxBaseSize); err == nil {
			p.set[d.k.op.keys.base()] = full
		}
	}
	if !d.k.unstored.keep(u, p) {
		return
	}
	msg := fmt.Sprintf("Setpoint cannot store its handler progress on this %s: the API server refuses it for size "+
		"(annotations over 256 KiB, or the object over etcd's request limit). Handlers run as if it were stored, "+
		"but only this operator process remembers what ran: after a restart they run again. Make the object or its annotations smaller.", d.k.gvk.Kind)
	d.k.logger().Error(errors.New("bookkeeping too large"), "handler progress kept in memory only",
		"namespace", u.GetNamespace(), "name", u.GetName())
	d.k.events.post(u, corev1.EventTypeWarning, ReasonBookkeepingTooLarge, msg)
}

func (d *dispatcher[T]) patch(ctx context.Context, u *unstructured.Unstructured, pt types.PatchType, data []byte) error {
	err := d.k.op.mgr.GetClient().Patch(ctx, u, client.RawPatch(pt, data), client.FieldOwner(d.k.op.opts.Name))
	switch {
	case apierrors.IsNotFound(err), replaced(err):
		return nil // gone: there is nothing of it to keep books on
	case err != nil:
		return fmt.Errorf("patch %s %s/%s: %w", d.k.gvk.Kind, u.GetNamespace(), u.GetName(), err)
	}
	d.k.fresh.wrote(u.GetUID(), u.GetResourceVersion())
	return nil
}

// replaced reports whether a patch carrying the UID of the object read
// (metaPatch.annotations) was refused because the name now holds
// another object: the one read is gone.
func replaced(err error) bool {
	var status apierrors.APIStatus
	if !apierrors.IsInvalid(err) || !errors.As(err, &status) || status.Status().Details == nil {
		return false
	}
	for _, c := range status.Status().Details.Causes {
		if c.Field == "metadata.uid" {
			return true
		}
	}
	return false
}

// finalizer adds or removes our finalizer. The finalizer list is shared,
// so the patch is guarded by resourceVersion; on a conflict the object is
// read afresh from the API server and the change tried again. gone
// reports that the object is no longer there (deleted, or its name now
// holds another object, whose finalizer is not this pass's to change).
func (d *dispatcher[T]) finalizer(ctx context.Context, u *unstructured.Unstructured, add bool) (_ *unstructured.Unstructured, gone bool, _ error) {
	p := &metaPatch{finalizer: d.k.op.keys.finalizer(), addFin: add, removeFin: !add}
	var err error
	for range 5 {
		data := p.finalizers(u)
		if data == nil {
			return u, false, nil
		}
		err = d.k.op.mgr.GetClient().Patch(ctx, u, client.RawPatch(types.JSONPatchType, data), client.FieldOwner(d.k.op.opts.Name))
		switch {
		case err == nil:
			d.k.fresh.wrote(u.GetUID(), u.GetResourceVersion())
			return u, false, nil
		case apierrors.IsNotFound(err):
			return u, true, nil
		case !apierrors.IsInvalid(err) && !apierrors.IsConflict(err):
			return u, false, fmt.Errorf("patch %s %s/%s: %w", d.k.gvk.Kind, u.GetNamespace(), u.GetName(), err)
		}
		fresh := d.k.newUnstructured()
		if gerr := d.k.op.mgr.GetAPIReader().Get(ctx, client.ObjectKeyFromObject(u), fresh); gerr != nil {
			if apierrors.IsNotFound(gerr) {
				return u, true, nil
			}
			return u, false, fmt.Errorf("re-read %s/%s: %w", u.GetNamespace(), u.GetName(), gerr)
		}
		if fresh.GetUID() != u.GetUID() {
			return u, true, nil
		}
		u = fresh
	}
	return u, false, fmt.Errorf("update finalizer of %s/%s: %w", u.GetNamespace(), u.GetName(), err)
}
