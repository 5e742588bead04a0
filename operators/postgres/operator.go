package postgres

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operators/postgres/agent"
)

// Options configure the PostgresCluster operator.
type Options struct {
	// AgentImage is Setpoint's image, from which each pod copies the
	// agent (default DefaultAgentImage).
	AgentImage string
	// Interval between two looks at a cluster's agents (default 1 s).
	Interval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Setup registers the PostgresCluster operator on op, whose scheme must
// hold the PostgresCluster types besides client-go's.
func Setup(op *operator.Operator, opts Options) error {
	if opts.AgentImage == "" {
		opts.AgentImage = DefaultAgentImage
	}
	if opts.Interval == 0 {
		opts.Interval = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cs, err := kubernetes.NewForConfig(op.Manager().GetConfig())
	if err != nil {
		return fmt.Errorf("postgres operator clientset: %w", err)
	}
	r := &reconciler{opts: opts, cs: cs, api: op.APIReader(), w: op.Client(), secretsMade: map[types.UID]bool{}}
	pcs := operator.Watch[*v1alpha1.PostgresCluster](op)
	r.get, r.patchStatus = pcs.Get, pcs.PatchStatus
	pcs.Children(r.children, &corev1.Pod{}, &corev1.PersistentVolumeClaim{}, &corev1.Service{},
		&policyv1.PodDisruptionBudget{}, &corev1.ServiceAccount{}, &rbacv1.Role{}, &rbacv1.RoleBinding{})
	pcs.Reconcile(r.secrets)
	pcs.Daemon(r.monitor, operator.ID("monitor"))
	return nil
}

type reconciler struct {
	opts        Options
	cs          kubernetes.Interface
	api         client.Reader
	w           client.Client
	get         func(context.Context, types.NamespacedName) (*v1alpha1.PostgresCluster, error)
	patchStatus func(ctx context.Context, before, after *v1alpha1.PostgresCluster) error

	mu          sync.Mutex
	secretsMade map[types.UID]bool
}

// children are the cluster's objects; the pods wait for the Secrets their
// environment reads.
func (r *reconciler) children(_ context.Context, c *v1alpha1.PostgresCluster) ([]client.Object, error) {
	sa, role, rb := AgentRBAC(c)
	out := []client.Object{sa, role, rb}
	for _, s := range Services(c) {
		out = append(out, s)
	}
	for _, pdb := range PodDisruptionBudgets(c) {
		out = append(out, pdb)
	}
	r.mu.Lock()
	ready := r.secretsMade[c.UID]
	r.mu.Unlock()
	for _, n := range agent.InstanceNames(c) {
		out = append(out, Claim(c, n))
		if ready {
			out = append(out, Pod(c, n, r.opts.AgentImage))
		}
	}
	return out, nil
}

// secrets makes the cluster's Secrets that do not exist yet, with random
// passwords, owned by the cluster. They are never updated: a password is
// changed by editing its Secret (and the instances pick it up at their
// next start as primary).
func (r *reconciler) secrets(ctx context.Context, p *operator.Pass[*v1alpha1.PostgresCluster]) (time.Duration, error) {
	c := p.Object
	r.mu.Lock()
	done := r.secretsMade[c.UID]
	r.mu.Unlock()
	if done {
		return 0, nil
	}
	_, owner := database(c)
	for _, s := range []struct{ name, user string }{
		{SuperuserSecret(c), "postgres"}, {ReplicationSecret(c), "streaming_replica"}, {AppSecret(c), owner},
	} {
		if err := r.ensureSecret(ctx, c, s.name, s.user); err != nil {
			return 0, err
		}
	}
	r.mu.Lock()
	r.secretsMade[c.UID] = true
	r.mu.Unlock()
	// Look again at once: the pods can be made now.
	return time.Millisecond, nil
}

func (r *reconciler) ensureSecret(ctx context.Context, c *v1alpha1.PostgresCluster, name, user string) error {
	existing := &corev1.Secret{}
	err := r.api.Get(ctx, types.NamespacedName{Namespace: c.Namespace, Name: name}, existing)
	if err == nil {
		if len(existing.Data["password"]) == 0 {
			return operator.Permanent(fmt.Errorf("secret %s has no key \"password\"", name))
		}
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("read secret %s: %w", name, err)
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace, Labels: selector(c)},
		Type:       corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": user, "password": base64.RawURLEncoding.EncodeToString(b)},
	}
	if err := controllerutil.SetOwnerReference(c, s, r.w.Scheme()); err != nil {
		return err
	}
	if err := r.w.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create secret %s: %w", name, err)
	}
	return nil
}

// monitor looks at a cluster's agents every interval and writes what it
// decides to the status, which the agents act on.
func (r *reconciler) monitor(ctx context.Context, snapshot *v1alpha1.PostgresCluster, log logr.Logger) error {
	key := client.ObjectKeyFromObject(snapshot)
	var lastWrite time.Time
	var lastEvent string
	for {
		c, err := r.get(ctx, key)
		switch {
		case apierrors.IsNotFound(err):
			c = snapshot // not in the cache yet; the library ends this daemon when it goes
		case err != nil:
			return err
		case c.UID != snapshot.UID || c.DeletionTimestamp != nil:
			return nil
		}
		written, ev, err := r.look(ctx, c, log, time.Since(lastWrite) > lsnRefresh)
		if err != nil && !apierrors.IsConflict(err) {
			log.Error(err, "look at the cluster")
		}
		if written {
			lastWrite = time.Now()
		}
		// The daemon's log lines are Events on the cluster: one per
		// decision, not one per look.
		if ev != nil && ev.Message != lastEvent {
			if ev.Type == corev1.EventTypeWarning {
				log.Error(errors.New(ev.Message), ev.Reason)
			} else {
				log.Info(ev.Message, "reason", ev.Reason)
			}
		}
		if ev != nil {
			lastEvent = ev.Message
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.opts.Interval):
		}
	}
}

// lsnRefresh is how often positions alone (LSNs, lag) are written to the
// status; roles, readiness and decisions are written at once.
const lsnRefresh = 10 * time.Second

func (r *reconciler) look(ctx context.Context, c *v1alpha1.PostgresCluster, log logr.Logger, refresh bool) (bool, *Event, error) {
	o := Observation{Cluster: c, Reports: r.reports(ctx, c, log), Pods: r.pods(ctx, c), Now: r.opts.Now()}
	o.Cordoned = r.cordoned(ctx, o.Pods[c.Status.CurrentPrimary])
	if c.Status.Initialized && c.Status.TargetPrimary == "" {
		o.LeaseExpired = r.leaseExpired(ctx, c, o.Now)
	}
	d := RecheckBeforeFence(o, Decide(o), func(instance string) *agent.Report {
		return r.report(ctx, c, instance, log)
	})
	next := c.DeepCopy()
	next.Status = d.Status
	if to := c.Annotations[AnnotationSwitchover]; to != "" {
		if err := r.switchover(ctx, c, next, to, o.Reports, log); err != nil {
			return false, d.Event, err
		}
	}
	if d.BreakLeaseOf != "" {
		if err := r.breakLease(ctx, c, d.BreakLeaseOf); err != nil {
			return false, d.Event, err
		}
	}
	// Nothing changed, or only positions and not yet time to write them.
	if equality.Semantic.DeepEqual(c.Status, next.Status) || !refresh && sameButPositions(c.Status, next.Status) {
		return false, d.Event, nil
	}
	if err := r.patchStatus(ctx, c, next); err != nil {
		return false, d.Event, err
	}
	return true, d.Event, nil
}

// switchover acts on the annotation and removes it.
func (r *reconciler) switchover(ctx context.Context, c, next *v1alpha1.PostgresCluster, to string, reports map[string]*agent.Report, log logr.Logger) error {
	if err := Switchover(&next.Status, to, reports); err != nil {
		log.Error(err, "switchover refused", "to", to)
	} else {
		next.Status.LastFailover = fmt.Sprintf("%s: switchover from %s to %s requested", r.opts.Now().UTC().Format(time.RFC3339), c.Status.CurrentPrimary, to)
		log.Info(fmt.Sprintf("Switching over from %s to %s.", c.Status.CurrentPrimary, to))
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
		"resourceVersion": c.ResourceVersion,
		"annotations":     map[string]any{AnnotationSwitchover: nil}}})
	after := c.DeepCopy()
	if err := r.w.Patch(ctx, after, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("remove %s: %w", AnnotationSwitchover, err)
	}
	// The status write that follows is guarded by this newer version.
	c.ResourceVersion, next.ResourceVersion = after.ResourceVersion, after.ResourceVersion
	delete(next.Annotations, AnnotationSwitchover)
	return nil
}

// breakLease ends the Lease of a primary known to be stopped, so the new
// primary need not wait for it to expire. Only a Lease still held by that
// instance is touched (the delete is conditional on its version).
func (r *reconciler) breakLease(ctx context.Context, c *v1alpha1.PostgresCluster, holder string) error {
	l := &coordinationv1.Lease{}
	err := r.api.Get(ctx, types.NamespacedName{Namespace: c.Namespace, Name: agent.LeaseName(c.Name)}, l)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != holder {
		return nil
	}
	err = r.w.Delete(ctx, l, client.Preconditions{ResourceVersion: &l.ResourceVersion})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// reports asks every agent for its status, through the API server's pod
// proxy, at the same time; an agent that does not answer within the
// timeout has no report.
func (r *reconciler) reports(ctx context.Context, c *v1alpha1.PostgresCluster, log logr.Logger) map[string]*agent.Report {
	names := agent.InstanceNames(c)
	out := make(map[string]*agent.Report, len(names))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Go(func() {
			if rep := r.report(ctx, c, n, log); rep != nil {
				mu.Lock()
				out[n] = rep
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// report asks one instance's agent for its status; nil if it does not
// answer within reportTimeout.
func (r *reconciler) report(ctx context.Context, c *v1alpha1.PostgresCluster, instance string, log logr.Logger) *agent.Report {
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	start := time.Now()
	body, err := r.cs.CoreV1().Pods(c.Namespace).ProxyGet("http", instance, fmt.Sprint(AgentPort), "/status", nil).DoRaw(ctx)
	if err != nil {
		log.V(1).Info("no report", "instance", instance, "after", time.Since(start).String(), "error", err.Error())
		return nil
	}
	rep := &agent.Report{}
	if json.Unmarshal(body, rep) != nil || rep.Instance != instance {
		return nil
	}
	return rep
}

const reportTimeout = 2 * time.Second

func (r *reconciler) pods(ctx context.Context, c *v1alpha1.PostgresCluster) map[string]*corev1.Pod {
	var list corev1.PodList
	if err := r.api.List(ctx, &list, client.InNamespace(c.Namespace), client.MatchingLabels(selector(c))); err != nil {
		return nil // unknown: an empty map would say every pod is gone
	}
	out := map[string]*corev1.Pod{}
	for i := range list.Items {
		p := &list.Items[i]
		if metav1.IsControlledBy(p, c) {
			out[p.Labels[LabelInstance]] = p
		}
	}
	return out
}

// leaseExpired: the primary Lease is no longer held by the current
// primary, or was last renewed longer ago than its duration; either way
// that primary stopped taking writes (its agent stops postgres when it
// cannot renew within the renew deadline, which is shorter).
func (r *reconciler) leaseExpired(ctx context.Context, c *v1alpha1.PostgresCluster, now time.Time) bool {
	l := &coordinationv1.Lease{}
	err := r.api.Get(ctx, types.NamespacedName{Namespace: c.Namespace, Name: agent.LeaseName(c.Name)}, l)
	if apierrors.IsNotFound(err) {
		return true
	}
	if err != nil {
		return false
	}
	h := l.Spec.HolderIdentity
	if h == nil || *h != c.Status.CurrentPrimary || l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return true
	}
	return now.After(l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second))
}

// cordoned reports whether the node of pod (the primary's) is
// unschedulable, as `kubectl drain` makes it first.
func (r *reconciler) cordoned(ctx context.Context, pod *corev1.Pod) bool {
	if pod == nil || pod.Spec.NodeName == "" {
		return false
	}
	n := &corev1.Node{}
	if err := r.api.Get(ctx, types.NamespacedName{Name: pod.Spec.NodeName}, n); err != nil {
		return false
	}
	return n.Spec.Unschedulable
}

// sameButPositions compares two statuses leaving out what moves with
// every write to the database (LSNs, lag) and condition times.
func sameButPositions(a, b v1alpha1.PostgresClusterStatus) bool {
	strip := func(s v1alpha1.PostgresClusterStatus) string {
		s = *s.DeepCopy()
		for i := range s.Instances {
			s.Instances[i].ReceivedLSN, s.Instances[i].ReplayedLSN, s.Instances[i].LagBytes = "", "", 0
		}
		for i := range s.Conditions {
			s.Conditions[i].LastTransitionTime = metav1.Time{}
		}
		b, _ := json.Marshal(s)
		return string(b)
	}
	return strip(a) == strip(b)
}
