package operator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

type timerSpec[T client.Object] struct {
	interval time.Duration
	fn       TimerFunc[T]
	cfg      handlerConfig
}

type daemonSpec[T client.Object] struct {
	fn  DaemonFunc[T]
	cfg handlerConfig
}

// Every runs fn for each object every interval, from InitialDelay after
// the object is first seen (or the operator starts). With Idle(d) it runs
// only once the object has been unchanged for d. An error is logged and
// posted as a Warning Event; the timer keeps its schedule.
func (k *Kind[T]) Every(interval time.Duration, fn TimerFunc[T], opts ...HandlerOption) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.timers = append(k.timers, &timerSpec[T]{interval: interval, fn: fn, cfg: newConfig(fn, opts)})
}

// Daemon runs fn in a goroutine for each object. Its context is cancelled
// when the object is being deleted, stops matching the filters, or the
// operator stops. An error return restarts it after the handler's backoff.
// Daemons hold no finalizer: deletion never waits for them.
func (k *Kind[T]) Daemon(fn DaemonFunc[T], opts ...HandlerOption) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.daemons = append(k.daemons, &daemonSpec[T]{fn: fn, cfg: newConfig(fn, opts)})
}

// tasks keeps the timers and daemons of each object of a kind. They run
// only where the kind's controller runs (the leader) and stop with it.
type tasks[T client.Object] struct {
	k *Kind[T]

	mu      sync.Mutex
	ctx     context.Context // the operator's, set at start
	stopped bool            // after stopAll: start nothing new
	running map[types.NamespacedName]*objectTasks
	changed map[types.NamespacedName]time.Time // last change seen, for Idle
	wg      sync.WaitGroup
}

type objectTasks struct {
	uid    types.UID
	cancel context.CancelFunc
	done   chan struct{} // closed when every goroutine of the object ended
}

func newTasks[T client.Object](k *Kind[T]) *tasks[T] {
	return &tasks[T]{k: k, running: map[types.NamespacedName]*objectTasks{}, changed: map[types.NamespacedName]time.Time{}}
}

func (t *tasks[T]) setup(op *Operator) error {
	if len(t.k.timers) == 0 && len(t.k.daemons) == 0 {
		return nil
	}
	// Tasks live under the operator's context, which exists before any
	// controller runs, so an object handled at start-up gets its tasks at
	// once. They are started only from the controller, hence only on the
	// leader; this leader-elected runnable ends them all when leadership or
	// the manager ends.
	t.mu.Lock()
	t.ctx = op.runCtx
	t.mu.Unlock()
	return op.mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		t.stopAll()
		return nil
	}))
}

// touched records a change of the object, for idle timers. Timers are
// registered before Run, so reading the list needs no lock here.
func (t *tasks[T]) touched(o client.Object) {
	if len(t.k.timers) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.changed[types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}] = time.Now()
}

func (t *tasks[T]) lastChange(key types.NamespacedName) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed[key]
}

// ensure starts the object's timers and daemons unless they run already.
func (t *tasks[T]) ensure(u *unstructured.Unstructured) {
	if len(t.k.timers) == 0 && len(t.k.daemons) == 0 {
		return
	}
	key := types.NamespacedName{Namespace: u.GetNamespace(), Name: u.GetName()}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx == nil || t.ctx.Err() != nil || t.stopped {
		return
	}
	if cur, ok := t.running[key]; ok {
		if cur.uid == u.GetUID() {
			return
		}
		cur.cancel() // same name, new object
	}
	if _, ok := t.changed[key]; !ok {
		t.changed[key] = time.Now()
	}
	ctx, cancel := context.WithCancel(t.ctx)
	ot := &objectTasks{uid: u.GetUID(), cancel: cancel, done: make(chan struct{})}
	t.running[key] = ot
	log := t.k.logger().WithValues("namespace", key.Namespace, "name", key.Name)
	var wg sync.WaitGroup
	for _, s := range t.k.timers {
		wg.Go(func() { t.timer(ctx, key, s, log.WithValues("timer", s.cfg.id)) })
	}
	for _, s := range t.k.daemons {
		wg.Go(func() { t.daemon(ctx, key, s, log.WithValues("daemon", s.cfg.id)) })
	}
	t.wg.Add(1)
	go func() {
		wg.Wait()
		close(ot.done)
		t.wg.Done()
	}()
}

// stop cancels the object's tasks and does not wait for them: deletion
// must never wait on a daemon. A daemon that ignores its context past its
// stop timeout is reported.
func (t *tasks[T]) stop(key types.NamespacedName) {
	t.mu.Lock()
	ot, ok := t.running[key]
	delete(t.running, key)
	delete(t.changed, key)
	t.mu.Unlock()
	if !ok {
		return
	}
	ot.cancel()
	timeout := t.stopTimeout()
	go func() {
		select {
		case <-ot.done:
		case <-time.After(timeout):
			t.k.logger().Error(nil, "daemon did not stop within its stop timeout; abandoned", "namespace", key.Namespace, "name", key.Name, "timeout", timeout)
		}
	}()
}

func (t *tasks[T]) stopTimeout() time.Duration {
	d := time.Duration(0)
	for _, s := range t.k.daemons {
		d = max(d, s.cfg.stopTimeout)
	}
	return max(d, time.Second)
}

// stopAll ends every task when the operator stops, waiting up to the
// longest stop timeout.
func (t *tasks[T]) stopAll() {
	t.mu.Lock()
	t.stopped = true
	for key, ot := range t.running {
		ot.cancel()
		delete(t.running, key)
	}
	t.mu.Unlock()
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(t.stopTimeout()):
		t.k.logger().Error(nil, "some daemons did not stop within their stop timeout")
	}
}

// current reads the object from the cache, as it is now.
func (t *tasks[T]) current(ctx context.Context, key types.NamespacedName) (*unstructured.Unstructured, T, error) {
	var zero T
	u, err := t.k.read(ctx, t.k.op.mgr.GetCache(), key)
	if err != nil {
		return nil, zero, err
	}
	obj, err := t.k.decode(u)
	return u, obj, err
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

func (t *tasks[T]) timer(ctx context.Context, key types.NamespacedName, s *timerSpec[T], log logr.Logger) {
	if !sleep(ctx, s.cfg.initialDelay) {
		return
	}
	for {
		if s.cfg.idle > 0 {
			if wait := s.cfg.idle - time.Since(t.lastChange(key)); wait > 0 {
				if !sleep(ctx, wait) {
					return
				}
				continue
			}
		}
		u, obj, err := t.current(ctx, key)
		if apierrors.IsNotFound(err) || ctx.Err() != nil {
			return
		}
		if err == nil {
			err = t.invoke(ctx, u, s.cfg.id, log, func(ctx context.Context, l logr.Logger) error { return s.fn(ctx, obj, l) })
			if err != nil && ctx.Err() == nil {
				t.k.events.post(u, corev1.EventTypeWarning, ReasonTimerFailed, fmt.Sprintf("Timer %s failed: %v", s.cfg.id, err))
				log.Error(err, "timer failed")
			}
		}
		if !sleep(ctx, s.interval) {
			return
		}
	}
}

func (t *tasks[T]) daemon(ctx context.Context, key types.NamespacedName, s *daemonSpec[T], log logr.Logger) {
	if !sleep(ctx, s.cfg.initialDelay) {
		return
	}
	for attempt := 1; ; attempt++ {
		u, obj, err := t.current(ctx, key)
		if apierrors.IsNotFound(err) || ctx.Err() != nil {
			return
		}
		if err == nil {
			err = t.invoke(ctx, u, s.cfg.id, log, func(ctx context.Context, l logr.Logger) error { return s.fn(ctx, obj, l) })
			if err == nil || ctx.Err() != nil {
				return // finished on its own, or stopped
			}
			delay := s.cfg.backoff.Delay(attempt)
			t.k.events.post(u, corev1.EventTypeWarning, ReasonDaemonFailed, fmt.Sprintf("Daemon %s failed, restarting in %s: %v", s.cfg.id, delay, err))
			log.Error(err, "daemon failed; restarting", "in", delay)
			if !sleep(ctx, delay) {
				return
			}
			continue
		}
		if !sleep(ctx, s.cfg.backoff.Delay(attempt)) {
			return
		}
	}
}

// invoke runs a timer or daemon body with an event-posting logger, metrics
// and panic recovery.
func (t *tasks[T]) invoke(ctx context.Context, u *unstructured.Unstructured, id string, log logr.Logger, fn func(context.Context, logr.Logger) error) (err error) {
	k := t.k
	l := k.events.logger(log, u)
	labels := []string{k.op.opts.Name, k.gvk.Kind, id}
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			err = panicError{r}
		}
		handlerDuration.WithLabelValues(labels...).Observe(time.Since(start).Seconds())
		result := "success"
		if err != nil && ctx.Err() == nil {
			result = "retry"
			handlerErrors.WithLabelValues(labels...).Inc()
		}
		handlerCalls.WithLabelValues(append(labels, result)...).Inc()
	}()
	return fn(logr.NewContext(ctx, l), l)
}

// deleted is called from the watch when an object is gone from the API.
func (k *Kind[T]) deleted(ctx context.Context, u client.Object) {
	key := types.NamespacedName{Namespace: u.GetNamespace(), Name: u.GetName()}
	k.tasks.stop(key)
	k.resumed.Delete(u.GetUID())
	k.events.forget(u.GetUID())
	k.refusalsSeen.Delete(u.GetUID())
	k.optionalDeletes(ctx, u)
	k.optionalDone.Delete(u.GetUID())
}

// optionalDeletes runs the optional delete handlers once per object, best
// effort: there is no finalizer, so the object may be gone already and
// progress lives only in memory.
func (k *Kind[T]) optionalDeletes(ctx context.Context, o client.Object) {
	var due []*changeHandler[T]
	for _, h := range k.handlers {
		if h.reason == Delete && h.cfg.optional {
			due = append(due, h)
		}
	}
	if len(due) == 0 || k.needsFinalizer() {
		// With a finalizer, optional handlers run in the delete flow.
		return
	}
	if _, done := k.optionalDone.LoadOrStore(o.GetUID(), struct{}{}); done {
		return
	}
	u, err := asUnstructured(o, k.gvk)
	if err != nil {
		return
	}
	if u == o {
		// The cache's own: the handlers run after it may change.
		u = u.DeepCopy()
	}
	obj, err := k.decode(u)
	if err != nil {
		return
	}
	log := k.logger().WithValues("namespace", u.GetNamespace(), "name", u.GetName())
	ess := k.op.keys.essence(u)
	go func() {
		for _, h := range due {
			hlog := k.events.logger(log.WithValues("handler", h.cfg.id), u)
			attempts := max(h.cfg.retries, 1)
			for i := 1; i <= attempts; i++ {
				c := &Cause[T]{Reason: Delete, Object: obj, New: ess, Retry: i - 1, Started: time.Now(), Log: hlog}
				err := invoke(logr.NewContext(context.WithoutCancel(ctx), hlog), h.fn, c)
				if err == nil {
					k.events.post(u, corev1.EventTypeNormal, ReasonSucceeded, fmt.Sprintf("Handler %s succeeded.", h.cfg.id))
					break
				}
				hlog.Error(err, "optional delete handler failed", "attempt", i)
				if i == attempts || IsPermanent(err) || !sleep(k.op.runCtx, h.cfg.backoff.Delay(i)) {
					break
				}
			}
		}
	}()
}
