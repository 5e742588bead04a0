package reloader

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operator/configdata"
)

// ReasonReloaded is the reason of the Event a roll posts on the workload.
const ReasonReloaded = "Reloaded"

// DefaultQuiet is how long the configuration of a workload must stay
// unchanged before it is rolled, so a burst of edits (kubectl apply of
// several ConfigMaps, a script that sets keys one by one) rolls once.
const DefaultQuiet = time.Second

// Options configure the reloader.
type Options struct {
	// Strategy of workloads without AnnotationStrategy (default
	// StrategyAnnotation).
	Strategy Strategy
	// Quiet is how long a change must be left alone before the roll
	// (default DefaultQuiet; negative: roll at once). A change that keeps
	// changing is rolled after ten times Quiet at the latest.
	Quiet time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

var rolls = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "setpoint_reloader_rolls_total",
	Help: "Workloads rolled by the config reloader, by kind and strategy.",
}, []string{"kind", "strategy"})

func init() { metrics.Registry.MustRegister(rolls) }

// Setup registers the reloader's handlers for Deployments, StatefulSets
// and DaemonSets on op.
func Setup(op *operator.Operator, opts Options) error {
	if opts.Strategy == "" {
		opts.Strategy = StrategyAnnotation
	}
	if _, err := ParseStrategy(string(opts.Strategy)); err != nil {
		return err
	}
	if opts.Quiet == 0 {
		opts.Quiet = DefaultQuiet
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &reloader{c: op.ConfigReader(), opts: opts, key: op.DigestKey, pending: map[string]pending{}}
	watchKind(op, r, func(d *appsv1.Deployment) *corev1.PodTemplateSpec { return &d.Spec.Template })
	watchKind(op, r, func(s *appsv1.StatefulSet) *corev1.PodTemplateSpec { return &s.Spec.Template })
	watchKind(op, r, func(d *appsv1.DaemonSet) *corev1.PodTemplateSpec { return &d.Spec.Template })
	return nil
}

// watchKind wires one workload kind: a level-triggered pass over each
// opted-in workload, and an index from ConfigMaps and Secrets to the
// workloads that track them, which wakes those workloads on a change.
func watchKind[T client.Object](op *operator.Operator, r *reloader, template func(T) *corev1.PodTemplateSpec) {
	kind := operator.Watch[T](op, operator.When(func(w T) bool { return OptedIn(w.GetAnnotations()) }))
	name := strings.ToLower(fmt.Sprintf("%T", *new(T)))
	name = name[strings.LastIndex(name, ".")+1:]
	kind.Reconcile(func(ctx context.Context, p *operator.Pass[T]) (time.Duration, error) {
		return r.pass(ctx, p.Object, template(p.Object), passOps{event: p.Event, patch: p.Patch, kind: name})
	})
	// The library's index from ConfigMaps and Secrets to their users, and
	// its metadata-only watches of them: the content of the few that are
	// read comes through ConfigReader.
	operator.WatchConfig(kind, "reloader-"+name, func(w T) []configdata.Ref {
		uses := Tracked(w.GetAnnotations(), &template(w).Spec)
		refs := make([]configdata.Ref, len(uses))
		for i, u := range uses {
			refs[i] = configdata.Ref{Kind: u.Kind, Name: u.Name}
		}
		return refs
	})
}

type reloader struct {
	c    client.Reader
	opts Options
	// key digests the configuration (the install's digest key).
	key func() configdata.Key

	mu      sync.Mutex
	pending map[string]pending // workload -> roll waiting for quiet
}

// pending is a roll waiting for the configuration to settle.
type pending struct {
	target      string    // the combined digest it would roll to
	since       time.Time // when target was first seen
	firstChange time.Time // when the workload's first unrolled change was seen
}

// passOps are what a pass does to its workload, from operator.Pass.
type passOps struct {
	kind  string
	event func(eventType, reason, message string)
	patch func(ctx context.Context, pt types.PatchType, data []byte) error
}

// pass decides and does what one workload needs: nothing, record the
// digests, or roll.
func (r *reloader) pass(ctx context.Context, w client.Object, tmpl *corev1.PodTemplateSpec, ops passOps) (time.Duration, error) {
	ann := w.GetAnnotations()
	strategy, err := StrategyOf(ann, r.opts.Strategy)
	if err != nil {
		return 0, operator.Permanent(err)
	}
	uses := Tracked(ann, &tmpl.Spec)
	key := r.key()
	current := make(map[string]string, len(uses)+1)
	tracked := make([]string, 0, len(uses)+1)
	for _, u := range uses {
		tracked = append(tracked, u.String())
		data, found, err := configdata.Read(ctx, r.c, u.Kind, w.GetNamespace(), u.Name)
		if err != nil {
			return 0, err
		}
		if found {
			current[u.String()] = key.Digest(data, u.Keys)
		}
	}
	var recorded Hashes
	if s, ok := ann[AnnotationHashes]; ok {
		if recorded, err = ParseHashes(s); err != nil {
			// Someone edited it: start again from what is there now.
			recorded = nil
		}
	}
	recorded = Comparable(recorded, key)
	tracked = append(tracked, KeyEntry)
	current[KeyEntry] = key.Fingerprint()
	d := Decide(recorded, current, tracked)
	id := ops.kind + "/" + w.GetNamespace() + "/" + w.GetName()
	if len(d.Changed) > 0 {
		if wait := r.settle(id, d.Record.Combined()); wait > 0 {
			return wait, nil
		}
	}
	r.forget(id)
	data, err := Patch(&tmpl.Spec, uses, d, strategy)
	if err != nil || data == nil {
		return 0, err
	}
	if err := ops.patch(ctx, types.StrategicMergePatchType, data); err != nil {
		return 0, fmt.Errorf("patch %s %s/%s: %w", ops.kind, w.GetNamespace(), w.GetName(), err)
	}
	if len(d.Changed) > 0 {
		rolls.WithLabelValues(ops.kind, string(strategy)).Inc()
		names := make([]string, len(d.Changed))
		for i, c := range d.Changed {
			names[i] = strings.Replace(c, "/", " ", 1)
		}
		ops.event(corev1.EventTypeNormal, ReasonReloaded,
			fmt.Sprintf("Rolled for a change in %s (strategy %s).", strings.Join(names, ", "), strategy))
	}
	return 0, nil
}

// settle returns how long to wait before rolling workload id to target:
// until target has been the desired state for Quiet, or ten times Quiet
// after the first change at the latest.
func (r *reloader) settle(id, target string) time.Duration {
	q := r.opts.Quiet
	if q < 0 {
		return 0
	}
	now := r.opts.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) > 10000 {
		// Workloads deleted while a roll waited are never passed over
		// again: forget what is long overdue.
		for k, p := range r.pending {
			if now.Sub(p.firstChange) > 20*q {
				delete(r.pending, k)
			}
		}
	}
	p, ok := r.pending[id]
	switch {
	case !ok:
		r.pending[id] = pending{target: target, since: now, firstChange: now}
		return q
	case p.target != target:
		p.target, p.since = target, now
		r.pending[id] = p
	}
	if wait := q - now.Sub(p.since); wait > 0 && now.Sub(p.firstChange) < 10*q {
		return wait
	}
	return 0
}

func (r *reloader) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pending, id)
}
