package celery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operator/configdata"
	"github.com/setpoint-dev/setpoint/operator/rollout"
	"github.com/setpoint-dev/setpoint/operators/celery/autoscale"
	"github.com/setpoint-dev/setpoint/operators/celery/broker"
)

// Condition types and reasons of a CeleryCluster besides the rollout's.
const (
	ConditionBrokerReachable = "BrokerReachable"
	ReasonBrokerReachable    = "Reachable"
	ReasonBrokerUnreachable  = "BrokerUnreachable"
	ReasonBrokerSecret       = "BrokerSecretMissing"
)

var (
	backlogGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "setpoint_celery_queue_backlog",
		Help: "Messages waiting in a Celery queue, plus those held unacknowledged where the broker shows them.",
	}, []string{"namespace", "cluster", "queue"})
	desiredGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "setpoint_celery_desired_replicas",
		Help: "Workers the autoscaler wants for a pool.",
	}, []string{"namespace", "cluster", "pool"})
	polls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "setpoint_celery_polls_total",
		Help: "Backlog reads of a CeleryCluster's broker, by result.",
	}, []string{"namespace", "cluster", "result"})
)

func init() { metrics.Registry.MustRegister(backlogGauge, desiredGauge, polls) }

// Options configure the CeleryCluster operator.
type Options struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Setup registers the CeleryCluster operator's handlers on op, whose
// scheme must hold the CeleryCluster types besides client-go's.
func Setup(op *operator.Operator, opts Options) error {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// Broker Secrets are read with a GET each, not through a cache: a
	// cache would list and watch every Secret in the cluster, which this
	// operator has no need (or permission) to see.
	secrets := op.APIReader()
	r := &reconciler{secrets: secrets, w: op.Client(), now: opts.Now, clusters: map[types.UID]*clusterState{}}
	ccs := operator.Watch[*v1alpha1.CeleryCluster](op)
	r.get = ccs.Get
	r.patchStatus = ccs.PatchStatus
	ccs.Children(r.children, &appsv1.Deployment{}, &corev1.Service{})
	ccs.Status(r.status)
	ccs.Daemon(r.autoscale, operator.ID("autoscaler"))
	ccs.OnValidate(admit(secrets))
	return nil
}

type reconciler struct {
	// secrets reads broker Secrets from the API server.
	secrets client.Reader
	w       client.Client
	// get reads a CeleryCluster from the library's cache, the one that
	// starts and stops the autoscaler daemons.
	get func(context.Context, types.NamespacedName) (*v1alpha1.CeleryCluster, error)
	// patchStatus writes the autoscaler's decisions (Kind.PatchStatus).
	patchStatus func(ctx context.Context, before, after *v1alpha1.CeleryCluster) error
	now         func() time.Time

	mu       sync.Mutex
	clusters map[types.UID]*clusterState
}

// clusterState is what the autoscaler keeps of one cluster in memory; its
// decisions are kept in the status, so a restart resumes from them.
type clusterState struct {
	brokerURL string
	mgmtURL   string
	// urlsRead is when the broker Secrets were last read, and urlsFrom
	// the references they were read through; they are read again after
	// secretRefresh, when the spec names other ones, or after a failed
	// poll.
	urlsRead time.Time
	urlsFrom string
	prober   broker.Prober
	scalers  map[string]*autoscale.Scaler
}

// initialReplicas is a pool's count before the autoscaler decided.
func initialReplicas(p v1alpha1.Pool) int32 {
	return autoscale.Desired(policy(p), 0)
}

func policy(p v1alpha1.Pool) autoscale.Policy {
	pol := autoscale.Policy{Min: 1, Max: p.MaxReplicas, Target: p.TargetBacklog, ScaleToZero: p.ScaleToZero,
		MaxStepUp: p.MaxScaleUpStep, MaxStepDown: p.MaxScaleDownStep, ScaleDownWindow: 2 * time.Minute}
	if p.MinReplicas != nil {
		pol.Min = *p.MinReplicas
	}
	if pol.Target <= 0 {
		pol.Target = 10
	}
	if p.ScaleDownWindow != nil {
		pol.ScaleDownWindow = p.ScaleDownWindow.Duration
	}
	return pol
}

// desired is a pool's replica count: the autoscaler's last decision
// (from the status), else the initial count.
func desired(cc *v1alpha1.CeleryCluster, p v1alpha1.Pool) int32 {
	for _, ps := range cc.Status.Pools {
		if ps.Name == p.Name {
			return min(max(ps.DesiredReplicas, policy(p).Min), p.MaxReplicas)
		}
	}
	return initialReplicas(p)
}

func (r *reconciler) children(_ context.Context, cc *v1alpha1.CeleryCluster) ([]client.Object, error) {
	var out []client.Object
	for _, p := range cc.Spec.Pools {
		out = append(out, Workers(cc, p, desired(cc, p)))
	}
	if b := Beat(cc); b != nil {
		out = append(out, b)
	}
	if d, s := Flower(cc); d != nil {
		out = append(out, d, s)
	}
	return out, nil
}

// status sums up the Deployments, keeping what the autoscaler wrote
// (backlog, desired replicas, last scale, BrokerReachable).
func (r *reconciler) status(_ context.Context, cc *v1alpha1.CeleryCluster, observed *operator.Observed) (any, error) {
	st := *cc.Status.DeepCopy()
	st.ObservedGeneration = cc.Generation
	var components []rollout.Component
	var pools []v1alpha1.PoolStatus
	st.Backlog = 0
	for _, p := range cc.Spec.Pools {
		ps := v1alpha1.PoolStatus{Name: p.Name, DesiredReplicas: desired(cc, p)}
		for _, old := range cc.Status.Pools {
			if old.Name == p.Name {
				ps = old
				ps.DesiredReplicas = desired(cc, p)
			}
		}
		d := &appsv1.Deployment{}
		ok, err := observed.Get(d, ComponentName(cc, p.Name))
		if err != nil {
			return nil, err
		}
		c := rollout.Component{Name: p.Name, Want: ps.DesiredReplicas}
		ps.ReadyReplicas = 0
		if ok {
			c.Deployment = d
			ps.ReadyReplicas = d.Status.ReadyReplicas
		}
		components = append(components, c)
		st.Backlog += ps.Backlog
		pools = append(pools, ps)
	}
	for _, extra := range []struct {
		name   string
		wanted bool
	}{{ComponentBeat, cc.Spec.Beat != nil}, {ComponentFlower, cc.Spec.Flower != nil}} {
		name := extra.name
		if !extra.wanted {
			continue
		}
		c := rollout.Component{Name: name, Want: 1}
		d := &appsv1.Deployment{}
		ok, err := observed.Get(d, ComponentName(cc, name))
		if err != nil {
			return nil, err
		}
		if ok {
			c.Deployment = d
		}
		components = append(components, c)
	}
	st.Pools = pools
	st.Workers = rollout.Summarise(components[:len(cc.Spec.Pools)]).Pods()
	sum := rollout.Summarise(components)
	blocker := rollout.Refused(observed)
	if c := meta.FindStatusCondition(st.Conditions, ConditionBrokerReachable); blocker == nil && c != nil && c.Status == metav1.ConditionFalse {
		blocker = &rollout.Blocker{Reason: c.Reason, Message: c.Message}
	}
	rollout.Conditions(&st.Conditions, cc.Generation, metav1.NewTime(r.now()), sum, blocker)
	return st, nil
}

// autoscale runs for each cluster: every poll interval it reads the
// backlog of every pool's queues, decides the pools' worker counts and
// writes what changed to the status, which makes the next pass apply it.
func (r *reconciler) autoscale(ctx context.Context, snapshot *v1alpha1.CeleryCluster, log logr.Logger) error {
	key := client.ObjectKeyFromObject(snapshot)
	defer r.forget(snapshot.UID)
	failures := 0
	cc := snapshot
	for {
		// The library ends this daemon (its ctx) when the object goes.
		fresh, err := r.get(ctx, key)
		switch {
		case err == nil && fresh.UID == snapshot.UID:
			cc = fresh
		case err == nil:
			return nil // replaced by a new object, which gets its own daemon
		case !apierrors.IsNotFound(err):
			return err
		}
		if cc.DeletionTimestamp != nil {
			return nil
		}
		interval := time.Second
		if cc.Spec.PollInterval != nil {
			interval = max(cc.Spec.PollInterval.Duration, 200*time.Millisecond)
		}
		reached, err := r.poll(ctx, cc, log)
		conflict := apierrors.IsConflict(err)
		if err != nil && !conflict {
			return err
		}
		// A broker that does not answer is asked again with backoff, up
		// to brokerRetryMax, not hammered every interval.
		if reached {
			failures = 0
		} else {
			failures++
			interval = min(interval<<min(failures, 10), max(interval, brokerRetryMax))
		}
		if conflict {
			// The status changed under the decision: decide again at
			// once, from the newer copy.
			interval = conflictRetry
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// conflictRetry is how soon a poll whose status write lost a race is
// made again.
const conflictRetry = 20 * time.Millisecond

// brokerRetryMax bounds the backoff of an unreachable broker.
const brokerRetryMax = 30 * time.Second

// poll does one round of the autoscaler and reports whether the broker
// answered. A broker it cannot read keeps every pool as it is and says
// why in BrokerReachable.
func (r *reconciler) poll(ctx context.Context, cc *v1alpha1.CeleryCluster, log logr.Logger) (bool, error) {
	st := r.state(cc.UID)
	now := r.now()
	next := cc.Status.DeepCopy()
	reach := metav1.Condition{Type: ConditionBrokerReachable, Status: metav1.ConditionTrue, Reason: ReasonBrokerReachable,
		Message: "broker answered", ObservedGeneration: cc.Generation, LastTransitionTime: metav1.NewTime(now)}
	backlogs, err := r.backlogs(ctx, cc, st)
	result := "ok"
	if err != nil {
		result = "error"
	}
	polls.WithLabelValues(cc.Namespace, cc.Name, result).Inc()
	if err != nil {
		reach.Status, reach.Reason, reach.Message = metav1.ConditionFalse, ReasonBrokerUnreachable, err.Error()
		if errors.As(err, new(secretError)) {
			reach.Reason = ReasonBrokerSecret
		}
		if was := meta.FindStatusCondition(cc.Status.Conditions, ConditionBrokerReachable); was == nil || was.Status != metav1.ConditionFalse || was.Message != err.Error() {
			log.Error(err, "cannot read the backlog; keeping the worker counts")
		}
	}
	meta.SetStatusCondition(&next.Conditions, reach)
	if err == nil {
		var pools []v1alpha1.PoolStatus
		for _, p := range cc.Spec.Pools {
			ps := v1alpha1.PoolStatus{Name: p.Name}
			for _, old := range cc.Status.Pools {
				if old.Name == p.Name {
					ps = old
				}
			}
			current := desired(cc, p)
			var total int64
			known := true
			for _, q := range p.Queues {
				b := backlogs[q]
				total += b.Total()
				known = known && b.UnackedKnown
				backlogGauge.WithLabelValues(cc.Namespace, cc.Name, q).Set(float64(b.Total()))
			}
			sc := st.scalers[p.Name]
			if sc == nil {
				sc = &autoscale.Scaler{}
				st.scalers[p.Name] = sc
			}
			d := sc.Next(policy(p), now, current, total)
			ps.Backlog, ps.UnackedCounted, ps.DesiredReplicas = total, known, d.Replicas
			if d.Changed(current) {
				ps.LastScaleTime = &metav1.Time{Time: now}
				ps.LastScaleReason = fmt.Sprintf("%d → %d: %s", current, d.Replicas, d.Reason)
				log.Info(fmt.Sprintf("Scaled pool %s from %d to %d workers: %s.", p.Name, current, d.Replicas, d.Reason))
			}
			desiredGauge.WithLabelValues(cc.Namespace, cc.Name, p.Name).Set(float64(d.Replicas))
			pools = append(pools, ps)
		}
		next.Pools = pools
	}
	reached := err == nil
	if equality.Semantic.DeepEqual(next.Pools, cc.Status.Pools) && conditionsEqual(next.Conditions, cc.Status.Conditions) {
		return reached, nil // nothing changed: no write
	}
	patched := cc.DeepCopy()
	patched.Status = *next
	// Conditional on the copy the decision was made from: the children
	// pass writes the status too, and neither may revert the other.
	if err := r.patchStatus(ctx, cc, patched); client.IgnoreNotFound(err) != nil {
		return reached, err
	}
	return reached, nil
}

// conditionsEqual compares conditions without their transition times.
func conditionsEqual(a, b []metav1.Condition) bool {
	if len(a) != len(b) {
		return false
	}
	for _, c := range a {
		o := meta.FindStatusCondition(b, c.Type)
		if o == nil || o.Status != c.Status || o.Reason != c.Reason || o.Message != c.Message || o.ObservedGeneration != c.ObservedGeneration {
			return false
		}
	}
	return true
}

// backlogs reads every queue of the cluster through a prober kept per
// cluster and broker URL.
func (r *reconciler) backlogs(ctx context.Context, cc *v1alpha1.CeleryCluster, st *clusterState) (_ map[string]broker.Backlog, err error) {
	defer func() {
		if err != nil {
			st.urlsRead = time.Time{} // read the Secrets again next time
		}
	}()
	url, mgmt := st.brokerURL, st.mgmtURL
	from := cc.Spec.Broker.URLSecretRef.Name + "/" + cc.Spec.Broker.URLSecretRef.Key
	if ref := cc.Spec.Broker.ManagementURLSecretRef; ref != nil {
		from += " " + ref.Name + "/" + ref.Key
	}
	if st.prober == nil || st.urlsFrom != from || r.now().Sub(st.urlsRead) >= secretRefresh {
		if url, err = r.secret(ctx, cc.Namespace, cc.Spec.Broker.URLSecretRef); err != nil {
			return nil, err
		}
		mgmt = ""
		if ref := cc.Spec.Broker.ManagementURLSecretRef; ref != nil {
			if mgmt, err = r.secret(ctx, cc.Namespace, *ref); err != nil {
				return nil, err
			}
		}
		st.urlsRead, st.urlsFrom = r.now(), from
	}
	if st.prober == nil || st.brokerURL != url || st.mgmtURL != mgmt {
		if st.prober != nil {
			_ = st.prober.Close()
		}
		p, err := broker.Open(url, broker.Options{ManagementURL: mgmt})
		if err != nil {
			return nil, err
		}
		st.prober, st.brokerURL, st.mgmtURL = p, url, mgmt
	}
	var queues []string
	for _, p := range cc.Spec.Pools {
		queues = append(queues, p.Queues...)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return st.prober.Backlog(pctx, queues)
}

// secretRefresh is how often a working broker's Secrets are read again,
// so a rotated password is picked up without a GET per poll.
const secretRefresh = 30 * time.Second

// secretError is a broker Secret or key that is not there: the user's to
// fix, reported with its own reason.
type secretError struct{ msg string }

func (e secretError) Error() string { return e.msg }

// secret reads one key of a Secret in the cluster's namespace.
func (r *reconciler) secret(ctx context.Context, namespace string, ref corev1.SecretKeySelector) (string, error) {
	data, found, err := configdata.Read(ctx, r.secrets, configdata.KindSecret, namespace, ref.Name)
	if err != nil {
		return "", err
	}
	v, ok := data[ref.Key]
	if !found || !ok || len(v) == 0 {
		return "", secretError{fmt.Sprintf("Secret %s has no key %s", ref.Name, ref.Key)}
	}
	return string(v), nil
}

func (r *reconciler) state(uid types.UID) *clusterState {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.clusters[uid]
	if st == nil {
		st = &clusterState{scalers: map[string]*autoscale.Scaler{}}
		r.clusters[uid] = st
	}
	return st
}

func (r *reconciler) forget(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.clusters[uid]; st != nil && st.prober != nil {
		_ = st.prober.Close()
	}
	delete(r.clusters, uid)
}
