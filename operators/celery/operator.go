package celery

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	api := op.APIReader()
	r := &reconciler{api: api, w: op.Client(), key: op.DigestKey, now: opts.Now, clusters: map[types.UID]*clusterState{}}
	ccs := operator.Watch[*v1alpha1.CeleryCluster](op)
	r.get = ccs.Get
	r.patchStatus = ccs.PatchStatus
	ccs.Children(r.children, &appsv1.Deployment{}, &corev1.Service{})
	ccs.Status(r.status)
	ccs.Daemon(r.autoscale, operator.ID("autoscaler"))
	ccs.OnValidate(admit(api))
	return nil
}

type reconciler struct {
	// api reads from the API server, uncached: the ConfigMaps and
	// Secrets the pods read (one GET each), and the worker pods (only
	// before a scale-down, and while a worker is silent).
	api client.Reader
	w   client.Client
	// get reads a CeleryCluster from the library's cache, the one that
	// starts and stops the autoscaler daemons.
	get func(context.Context, types.NamespacedName) (*v1alpha1.CeleryCluster, error)
	// patchStatus writes the autoscaler's decisions (Kind.PatchStatus).
	patchStatus func(ctx context.Context, before, after *v1alpha1.CeleryCluster) error
	now         func() time.Time
	// key digests the configuration the pods read (the install's key).
	key func() configdata.Key

	mu       sync.Mutex
	clusters map[types.UID]*clusterState
}

// clusterState is what the autoscaler keeps of one cluster in memory; its
// decisions are kept in the status, so a restart resumes from them.
type clusterState struct {
	// brokerURL, mgmtURL and hash (the digest of the configuration the
	// pods read) were read at configRead through the references
	// configFrom; they are read again after configRefresh, when the
	// spec names other ones, or after a failed poll.
	brokerURL, mgmtURL, hash string
	configRead               time.Time
	configFrom               string
	// openURL and opts are what the prober was opened with.
	openURL string
	opts    broker.Options
	prober  broker.Prober
	scalers map[string]*autoscale.Scaler
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

// children are the pools' Deployments, beat's, and Flower's with its
// Service. Their pod templates carry the digest of the configuration they
// read (AnnotationConfigHash), read here with a GET of each ConfigMap and
// Secret: the operator may not list Secrets, so no cache or watch sees
// them change; the autoscaler reads them every configRefresh and, when
// the digest moves, records it in the status, which brings this pass.
func (r *reconciler) children(ctx context.Context, cc *v1alpha1.CeleryCluster) ([]client.Object, error) {
	hash := func(uses []configdata.Use) (string, error) {
		configs, err := configdata.ReadAll(ctx, r.api, cc.Namespace, uses)
		if err != nil {
			return "", err
		}
		return r.key().Hash(configs), nil
	}
	h, err := hash(Uses(cc))
	if err != nil {
		return nil, err
	}
	var out []client.Object
	for _, p := range cc.Spec.Pools {
		out = append(out, WithConfigHash(Workers(cc, p, desired(cc, p)), h))
	}
	if b := Beat(cc); b != nil {
		out = append(out, WithConfigHash(b, h))
	}
	if d, s := Flower(cc); d != nil {
		fh, err := hash(FlowerUses(cc))
		if err != nil {
			return nil, err
		}
		out = append(out, WithConfigHash(d, fh), s)
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
		// A new digest brings the children pass, which rolls the pods.
		next.ConfigHash = st.hash
		workers, werr := st.prober.Workers()
		if werr == nil {
			redisBroker := strings.HasPrefix(st.brokerURL, "redis")
			setScaleDownSafe(&next.Conditions, scaleDownSafe(redisBroker, ownWorkers(cc, workers), cc.Generation), redisBroker)
		}
		var pools []v1alpha1.PoolStatus
		for _, p := range cc.Spec.Pools {
			pools = append(pools, r.decide(ctx, cc, p, st, now, backlogs, workers, werr, log))
		}
		next.Pools = pools
	}
	reached := err == nil
	if equality.Semantic.DeepEqual(next.Pools, cc.Status.Pools) && conditionsEqual(next.Conditions, cc.Status.Conditions) && next.ConfigHash == cc.Status.ConfigHash {
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

// decide is one pool's next status: its backlog and running work, and the
// worker count the autoscaler chose for them.
func (r *reconciler) decide(ctx context.Context, cc *v1alpha1.CeleryCluster, p v1alpha1.Pool, st *clusterState, now time.Time,
	backlogs map[string]broker.Backlog, workers []broker.Worker, werr error, log logr.Logger) v1alpha1.PoolStatus {
	ps := v1alpha1.PoolStatus{Name: p.Name}
	for _, old := range cc.Status.Pools {
		if old.Name == p.Name {
			ps = old
		}
	}
	current := desired(cc, p)
	ps.DesiredReplicas = current
	var total int64
	known := true
	var qerr error
	for _, q := range p.Queues {
		b := backlogs[q]
		if b.Err != nil && qerr == nil {
			qerr = b.Err
		}
		total += b.Total()
		known = known && b.UnackedKnown
		backlogGauge.WithLabelValues(cc.Namespace, cc.Name, q).Set(float64(b.Total()))
	}
	busy, running, pods, aerr := r.activity(ctx, cc, p, workers)
	if werr == nil {
		werr = aerr
	}
	ps.BusyWorkers, ps.RunningTasks = busy, running
	if qerr != nil {
		// One unreadable queue holds its own pool, not the others.
		if ps.Message != qerr.Error() {
			log.Error(qerr, "cannot read a queue; keeping the pool's worker count", "pool", p.Name)
		}
		ps.Message = qerr.Error()
		return ps
	}
	sc := st.scalers[p.Name]
	if sc == nil {
		sc = &autoscale.Scaler{}
		st.scalers[p.Name] = sc
	}
	pol := policy(p)
	d := sc.Next(pol, now, current, autoscale.Load{Backlog: total, Busy: ps.BusyWorkers, BusyKnown: werr == nil})
	ps.Message = ""
	if werr != nil && autoscale.Desired(pol, total) < current && d.Replicas == current {
		ps.Message = "scale-down held: " + werr.Error()
	}
	ps.Backlog, ps.UnackedCounted, ps.DesiredReplicas = total, known, d.Replicas
	if d.Replicas < current {
		if err := r.markIdle(ctx, cc, p, pods, workers); err != nil {
			// The scale-down still goes ahead: the workers' warm
			// shutdown lets running tasks finish within the grace period.
			log.Error(err, "cannot mark the idle workers to go first", "pool", p.Name)
		}
	}
	if d.Changed(current) {
		ps.LastScaleTime = &metav1.Time{Time: now}
		ps.LastScaleReason = fmt.Sprintf("%d → %d: %s", current, d.Replicas, d.Reason)
		log.Info(fmt.Sprintf("Scaled pool %s from %d to %d workers: %s.", p.Name, current, d.Replicas, d.Reason))
	}
	desiredGauge.WithLabelValues(cc.Namespace, cc.Name, p.Name).Set(float64(d.Replicas))
	return ps
}

// activity counts the pool's busy workers and their running tasks. A
// silent worker (see broker.Worker) counts as busy while its pod exists:
// that takes a list of the pool's pods, made only then and returned for
// markIdle.
func (r *reconciler) activity(ctx context.Context, cc *v1alpha1.CeleryCluster, p v1alpha1.Pool, workers []broker.Worker) (busy, running int32, pods []corev1.Pod, err error) {
	prefix := WorkerHostname(p, ComponentName(cc, p.Name)+"-")
	var silent []broker.Worker
	for _, w := range workers {
		switch {
		case !strings.HasPrefix(w.Hostname, prefix):
		case w.Silent:
			silent = append(silent, w)
		case w.Active > 0:
			busy++
			running += int32(w.Active)
		}
	}
	if len(silent) == 0 {
		return busy, running, nil, nil
	}
	if pods, err = r.pods(ctx, cc, p); err != nil {
		return 0, 0, nil, err
	}
	alive := map[string]bool{}
	for _, pod := range pods {
		alive[WorkerHostname(p, pod.Name)] = true
	}
	for _, w := range silent {
		if alive[w.Hostname] {
			busy++
			running += int32(max(w.Active, 1))
		}
	}
	return busy, running, pods, nil
}

func (r *reconciler) pods(ctx context.Context, cc *v1alpha1.CeleryCluster, p v1alpha1.Pool) ([]corev1.Pod, error) {
	list := &corev1.PodList{}
	if err := r.api.List(ctx, list, client.InNamespace(cc.Namespace), client.MatchingLabels(selector(cc, p.Name))); err != nil {
		return nil, fmt.Errorf("list the pods of pool %s: %w", p.Name, err)
	}
	return list.Items, nil
}

// markIdle sets each of the pool's pods' deletion cost to the number of
// tasks its worker runs (at least 1 for a silent one), so that the
// ReplicaSet controller, which removes pods of lower cost first, takes
// idle workers before busy ones. A pod not heard from yet (starting) runs
// nothing and costs 0. pods is the pool's pods, or nil to list them.
func (r *reconciler) markIdle(ctx context.Context, cc *v1alpha1.CeleryCluster, p v1alpha1.Pool, pods []corev1.Pod, workers []broker.Worker) error {
	if pods == nil {
		var err error
		if pods, err = r.pods(ctx, cc, p); err != nil {
			return err
		}
	}
	active := map[string]int{}
	for _, w := range workers {
		active[w.Hostname] = w.Active
		if w.Silent {
			active[w.Hostname] = max(w.Active, 1)
		}
	}
	for i := range pods {
		pod := &pods[i]
		cost := strconv.Itoa(active[WorkerHostname(p, pod.Name)])
		if pod.DeletionTimestamp != nil || pod.Annotations[PodDeletionCost] == cost {
			continue
		}
		patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, PodDeletionCost, cost)
		if err := r.w.Patch(ctx, pod, client.RawPatch(types.MergePatchType, patch)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("set the deletion cost of pod %s: %w", pod.Name, err)
		}
	}
	return nil
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
// cluster, broker URL and options.
func (r *reconciler) backlogs(ctx context.Context, cc *v1alpha1.CeleryCluster, st *clusterState) (_ map[string]broker.Backlog, err error) {
	defer func() {
		if err != nil {
			st.configRead = time.Time{} // read the configuration again next time
		}
	}()
	if err := r.readConfig(ctx, cc, st); err != nil {
		return nil, err
	}
	opts := broker.Options{ManagementURL: st.mgmtURL}
	if t := cc.Spec.Broker.Redis; t != nil {
		opts.KeyPrefix, opts.UnackedKey = t.GlobalKeyPrefix, t.UnackedKey
	}
	if st.prober == nil || st.brokerURL != st.openURL || st.opts != opts {
		if st.prober != nil {
			_ = st.prober.Close()
		}
		p, err := broker.Open(st.brokerURL, opts)
		if err != nil {
			return nil, err
		}
		st.prober, st.openURL, st.opts = p, st.brokerURL, opts
	}
	var queues []string
	for _, p := range cc.Spec.Pools {
		queues = append(queues, p.Queues...)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return st.prober.Backlog(pctx, queues)
}

// configRefresh is how often the autoscaler reads the ConfigMaps and
// Secrets the pods read (the broker URL among them), a GET each: a
// rotated password reaches the autoscaler, and rolls the workers, within
// it.
const configRefresh = 10 * time.Second

// configFrom names what readConfig reads, by value: two copies of the
// same spec give the same name (a pointer printed would not).
func configFrom(cc *v1alpha1.CeleryCluster) string {
	uses := FlowerUses(cc)
	from := fmt.Sprint(configdata.Refs(uses), configdata.UsedKeys(uses))
	if ref := cc.Spec.Broker.ManagementURLSecretRef; ref != nil {
		from += " " + ref.Name + "/" + ref.Key
	}
	return from
}

// readConfig reads, when due, the configuration the cluster's pods read
// and the management URL: the broker URL and the digest (ConfigHash) are
// kept in st.
func (r *reconciler) readConfig(ctx context.Context, cc *v1alpha1.CeleryCluster, st *clusterState) error {
	uses := FlowerUses(cc)
	from := configFrom(cc)
	if st.configFrom == from && r.now().Sub(st.configRead) < configRefresh {
		return nil
	}
	configs, err := configdata.ReadAll(ctx, r.api, cc.Namespace, uses)
	if err != nil {
		return err
	}
	ref := cc.Spec.Broker.URLSecretRef
	url := ""
	for _, c := range configs {
		if c.Ref.Kind == configdata.KindSecret && c.Ref.Name == ref.Name {
			url = string(c.Data[ref.Key])
		}
	}
	if url == "" {
		return secretError{fmt.Sprintf("Secret %s has no key %s", ref.Name, ref.Key)}
	}
	mgmt := ""
	if ref := cc.Spec.Broker.ManagementURLSecretRef; ref != nil {
		if mgmt, err = r.secret(ctx, cc.Namespace, *ref); err != nil {
			return err
		}
	}
	st.brokerURL, st.mgmtURL, st.hash = url, mgmt, r.key().Hash(configs)
	st.configRead, st.configFrom = r.now(), from
	return nil
}

// secretError is a broker Secret or key that is not there: the user's to
// fix, reported with its own reason.
type secretError struct{ msg string }

func (e secretError) Error() string { return e.msg }

// secret reads one key of a Secret in the cluster's namespace.
func (r *reconciler) secret(ctx context.Context, namespace string, ref corev1.SecretKeySelector) (string, error) {
	data, found, err := configdata.Read(ctx, r.api, configdata.KindSecret, namespace, ref.Name)
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
