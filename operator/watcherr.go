package operator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// ReasonWatchFailed is the Warning posted when the list or watch of a
// kind fails (say, its RBAC was revoked); the operator is not ready until
// that watch has listed again.
const ReasonWatchFailed = "WatchFailed"

// watchFailures follows the informers' list and watch errors. A failing
// watch leaves the cache as it was, so handlers would go on from a stale
// copy of the world while the process looks healthy: the readiness check
// reports it instead, and an Event and a log line name the kind.
type watchFailures struct {
	mu     sync.Mutex
	failed map[*toolscache.Reflector]watchFailure
	// denied: kinds the last access check found the operator may not
	// list or watch, with why.
	denied map[string]string
}

type watchFailure struct {
	kind, msg string
	since     time.Time
	// rv is what the reflector had listed when it failed: a new one
	// means it listed again, so it recovered.
	rv string
}

// handler is the informers' WatchErrorHandler: client-go's (it logs and
// the reflector retries with back-off), plus the record.
func (op *Operator) watchFailed(ctx context.Context, r *toolscache.Reflector, err error) {
	toolscache.DefaultWatchErrorHandler(ctx, r, err)
	if ctx.Err() != nil || !failure(err) {
		return
	}
	kind := kindName(r.TypeDescription())
	w := &op.watchErrs
	w.mu.Lock()
	if w.failed == nil {
		w.failed = map[*toolscache.Reflector]watchFailure{}
	}
	_, known := w.failed[r]
	w.failed[r] = watchFailure{kind: kind, msg: err.Error(), since: time.Now(), rv: r.LastSyncResourceVersion()}
	w.mu.Unlock()
	if known {
		return // once per failure, not once per retry
	}
	msg := fmt.Sprintf("the watch of %s fails: %v; not ready until it lists again (the cache of %s is not kept up to date meanwhile)", kind, err, kind)
	op.log.Error(err, "watch failed: not ready until it lists again", "kind", kind)
	op.postAboutSelf(corev1.EventTypeWarning, ReasonWatchFailed, msg)
}

// failure: an error that stops the cache being kept up to date, not the
// ordinary end of a watch (closed, expired) that the reflector follows
// with a new one at once.
func failure(err error) bool {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), apierrors.IsResourceExpired(err), apierrors.IsGone(err):
		return false
	}
	return true
}

// watchesFailing lists the kinds whose watch failed and has not listed
// since; the recovered ones are forgotten, with a log line.
func (op *Operator) watchesFailing() []error {
	w := &op.watchErrs
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	for r, f := range w.failed {
		if r.LastSyncResourceVersion() != f.rv {
			delete(w.failed, r)
			op.log.Info("watch recovered", "kind", f.kind, "after", time.Since(f.since).Round(time.Second).String())
			continue
		}
		errs = append(errs, fmt.Errorf("watch of %s failing since %s: %s", f.kind, f.since.UTC().Format(time.RFC3339), f.msg))
	}
	for kind, why := range w.denied {
		errs = append(errs, fmt.Errorf("watch of %s: %s", kind, why))
	}
	return errs
}

// kindName makes a reflector's type description ("*v1.Secret", or
// "/v1, Kind=Secret" for unstructured) a kind name.
func kindName(desc string) string {
	if _, k, ok := strings.Cut(desc, "Kind="); ok {
		return k
	}
	if i := strings.LastIndex(desc, "."); i >= 0 {
		return desc[i+1:]
	}
	return desc
}

// postAboutSelf posts an Event about the operator itself, on its Lease:
// the one object every replica of it shares and an administrator can
// find (`kubectl describe lease <name>`). Without leader election there
// is none, and the log line is all.
func (op *Operator) postAboutSelf(typ, reason, msg string) {
	le := op.opts.LeaderElection
	if le == nil || le.Namespace == "" {
		return
	}
	lease := &coordinationv1.Lease{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Read for its UID, by which `kubectl describe` finds its Events.
	if err := op.mgr.GetAPIReader().Get(ctx, types.NamespacedName{Namespace: le.Namespace, Name: op.opts.Name}, lease); err != nil {
		op.log.V(1).Info("no Lease to post an Event on", "error", err.Error())
		return
	}
	lease.APIVersion, lease.Kind = "coordination.k8s.io/v1", "Lease"
	op.mgr.GetEventRecorder(op.opts.Name).Eventf(lease, nil, typ, reason, reason, "%s", msg)
}

// accessCheckInterval is how often the operator asks whether it may still
// list and watch each watched kind.
const accessCheckInterval = 15 * time.Second

// checkAccess asks, every accessCheckInterval, whether the operator may
// still list and watch each watched kind (SelfSubjectAccessReviews, which
// every identity may make). A watch already open outlives a revoked rule
// by minutes (until the API server ends it), and meanwhile the operator
// would work from a cache nothing updates.
func (op *Operator) checkAccess(ctx context.Context) error {
	t := time.NewTicker(accessCheckInterval)
	defer t.Stop()
	for {
		op.recordDenials(op.denials(ctx))
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// denials are the watched kinds the operator may not list or watch now,
// with why.
func (op *Operator) denials(ctx context.Context) map[string]string {
	op.mu.Lock()
	watched := op.watched
	op.mu.Unlock()
	namespaces := op.opts.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{""}
	}
	out := map[string]string{}
	seen := map[string]bool{}
	for _, proto := range watched {
		gvk, err := apiutil.GVKForObject(proto(), op.opts.Scheme)
		if err != nil || seen[gvk.String()] {
			continue
		}
		seen[gvk.String()] = true
		m, err := op.mgr.GetRESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			continue // not served: the watch says so
		}
		for _, ns := range namespaces {
			if m.Scope.Name() != meta.RESTScopeNameNamespace {
				ns = ""
			}
			for _, verb := range []string{"list", "watch"} {
				if denied := op.denied(ctx, m.Resource, ns, verb); denied != "" {
					out[gvk.Kind] = denied
				}
			}
		}
	}
	return out
}

// denied asks one question; "" when allowed or when it cannot be asked
// now (the watch itself reports an API server that does not answer).
func (op *Operator) denied(ctx context.Context, gvr schema.GroupVersionResource, ns, verb string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: gvr.Group, Resource: gvr.Resource}}}
	if err := op.mgr.GetClient().Create(ctx, r); err != nil || r.Status.Allowed {
		return ""
	}
	where := "in every namespace"
	if ns != "" {
		where = "in namespace " + ns
	}
	return fmt.Sprintf("may not %s %s %s (%s)", verb, gvr.GroupResource(), where, cmp.Or(r.Status.Reason, "no RBAC rule allows it"))
}

// recordDenials keeps what the last check found, saying once when a kind
// becomes denied and once when it is allowed again.
func (op *Operator) recordDenials(now map[string]string) {
	w := &op.watchErrs
	w.mu.Lock()
	before := w.denied
	w.denied = now
	w.mu.Unlock()
	for kind, why := range now {
		if _, known := before[kind]; !known {
			op.log.Error(errors.New(why), "watch of a kind no longer allowed: not ready", "kind", kind)
			op.postAboutSelf(corev1.EventTypeWarning, ReasonWatchFailed,
				fmt.Sprintf("the operator %s, so the cache of %s is no longer kept up to date: not ready until it may again", why, kind))
		}
	}
	for kind := range before {
		if _, still := now[kind]; !still {
			op.log.Info("watch of a kind allowed again", "kind", kind)
		}
	}
}
