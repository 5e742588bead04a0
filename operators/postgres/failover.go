package postgres

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
	"github.com/setpoint-dev/setpoint/operators/postgres/agent"
)

// Phases of a cluster.
const (
	PhaseInitializing  = "Initializing"
	PhaseHealthy       = "Healthy"
	PhaseWaiting       = "WaitingForReplicas"
	PhaseFailingOver   = "FailingOver"
	PhaseSwitchingOver = "SwitchingOver"
	PhasePrimaryDown   = "PrimaryUnhealthy"
)

// Condition types and reasons.
const (
	ConditionReady       = "Ready"
	ConditionProgressing = "Progressing"
	ConditionDegraded    = "Degraded"
)

// Observation is what the operator sees of a cluster in one look.
type Observation struct {
	Cluster *v1alpha1.PostgresCluster
	// Reports of the agents that answered, by instance.
	Reports map[string]*agent.Report
	// Pods by instance; nil when they could not be listed (unknown,
	// which is not the same as gone).
	Pods map[string]*corev1.Pod
	// Cordoned: the current primary's node is unschedulable (a drain
	// begins).
	Cordoned bool
	// LeaseExpired: while fencing, the primary Lease was last renewed by
	// the current primary longer ago than its duration (or is gone).
	LeaseExpired bool
	Now          time.Time
}

// Decision is what to do after a look.
type Decision struct {
	Status v1alpha1.PostgresClusterStatus
	// BreakLeaseOf names the old primary when it is known to run no
	// postgres (its agent is not running, or says it fenced itself): its
	// Lease may go to the new primary at once instead of after it expires.
	BreakLeaseOf string
	// Event to post, if any (Warning when Type says so).
	Event *Event
}

// Event is an Event the decision posts on the cluster.
type Event struct{ Type, Reason, Message string }

// Decide is the operator's whole judgement, a pure function of what it
// saw: the instances' status, who is primary, and when to fail over.
func Decide(o Observation) Decision {
	c := o.Cluster
	st := *c.Status.DeepCopy()
	st.ObservedGeneration = c.Generation
	names := agent.InstanceNames(c)
	if st.TargetPrimary == "" && !st.Initialized {
		st.TargetPrimary = names[0]
	}
	st.Instances = instanceStatuses(names, o.Reports, st.CurrentPrimary)
	d := Decision{}
	target := st.TargetPrimary
	switch healthy, why := primaryHealth(o, target); {
	case healthy:
		if st.CurrentPrimary != target && st.CurrentPrimary != "" {
			d.Event = &Event{corev1.EventTypeNormal, "PrimaryChanged", fmt.Sprintf("%s is the primary now, on timeline %d", target, o.Reports[target].Timeline)}
		}
		st.CurrentPrimary, st.Initialized, st.PrimaryUnhealthySince = target, true, nil
		st.Phase = PhaseHealthy
		st.Instances = instanceStatuses(names, o.Reports, target)
		restartSwitchover(o, &st, &d)
		drainSwitchover(o, &st, &d)
	case target == "":
		// Fencing: no instance is the target; choose once the old
		// primary is known to take no more writes.
		chooseAfterFence(o, &st, &d)
	case st.CurrentPrimary != target:
		// A promotion under way (or the very first primary): wait for it.
		switch {
		case !st.Initialized:
			st.Phase = PhaseInitializing
		case st.Phase != PhaseSwitchingOver:
			st.Phase = PhaseFailingOver
		}
		// The old primary may be seen stopped only now (its container's
		// state, its restarted agent's report).
		if old := st.CurrentPrimary; old != "" && knownStopped(o, old) {
			d.BreakLeaseOf = old
		}
	case lonePrimaryRestarting(&st):
		st.Phase = PhaseUpdating
	case o.Reports[target] != nil && o.Reports[target].DiskFull:
		// Its agent answers: the primary is stopped by its full volume.
		// The replicas hold the same data on volumes of the same size, so
		// a failover would only move the problem, and fail over again.
		st.Phase = PhasePrimaryDown
		d.Event = &Event{corev1.EventTypeWarning, ReasonDiskFull, fmt.Sprintf("primary %s stopped: its data volume is full; no failover (the replicas hold the same data on volumes of the same size): free space on it or grow spec.storage.size", target)}
	default:
		failover(o, &st, &d, why)
	}
	carryImages(o, &st)
	rollImage(o, &st, &d)
	if d.Event == nil {
		d.Event = recloned(c.Status.Instances, st.Instances)
	}
	summarise(c, &st, o.Now)
	d.Status = st
	return d
}

// restartSwitchover applies parameters that need a restart of the
// primary: once every replica has restarted for them (their agents do
// that on their own) and is ready, the primary hands over to one of them,
// and restarts as a replica.
func restartSwitchover(o Observation, st *v1alpha1.PostgresClusterStatus, d *Decision) {
	primary := o.Reports[st.CurrentPrimary]
	if primary == nil || len(primary.PendingRestart) == 0 || len(st.Instances) < 2 {
		return
	}
	fresh := map[string]*agent.Report{}
	for _, in := range st.Instances {
		r := o.Reports[in.Name]
		if in.Name == st.CurrentPrimary {
			continue
		}
		if r == nil || !r.Ready || len(r.PendingRestart) > 0 {
			return // wait: replicas first
		}
		fresh[in.Name] = r
	}
	switchTo(o, st, d, fresh, "RestartSwitchover", "to apply "+strings.Join(primary.PendingRestart, ", ")+", which need a restart")
}

// switchTo starts a switchover to the best of candidates that stream
// from the primary, with why in the status and an Event of reason;
// without one it does nothing. Only a connected standby is sure to
// receive everything: the old primary's fast stop sends its connected
// standbys every record up to its shutdown checkpoint and waits for them
// to flush it, but a replica that has just restarted (for a parameter,
// an image) may be ready before it has connected, and promoted then it
// would lack the last commits.
func switchTo(o Observation, st *v1alpha1.PostgresClusterStatus, d *Decision, candidates map[string]*agent.Report, reason, why string) {
	streaming := map[string]*agent.Report{}
	for n, r := range candidates {
		if r.Streaming {
			streaming[n] = r
		}
	}
	next, _ := Candidate(o.Cluster, st.CurrentPrimary, streaming)
	if next == "" {
		return
	}
	msg := fmt.Sprintf("switchover from %s to %s %s", st.CurrentPrimary, next, why)
	st.TargetPrimary, st.Phase = next, PhaseSwitchingOver
	st.LastFailover = o.Now.UTC().Format(time.RFC3339) + ": " + msg
	d.Event = &Event{corev1.EventTypeNormal, reason, msg}
}

// drainSwitchover moves the primary off a cordoned node (a drain
// begins; the primary's PDB holds its eviction back meanwhile) to the
// best ready replica on another node.
func drainSwitchover(o Observation, st *v1alpha1.PostgresClusterStatus, d *Decision) {
	if !o.Cordoned || st.Phase != PhaseHealthy && st.Phase != PhaseWaiting {
		return
	}
	node := ""
	if p := o.Pods[st.CurrentPrimary]; p != nil {
		node = p.Spec.NodeName
	}
	elsewhere := map[string]*agent.Report{}
	for _, in := range st.Instances {
		p := o.Pods[in.Name]
		if r := o.Reports[in.Name]; r != nil && r.Ready && p != nil && p.Spec.NodeName != node {
			elsewhere[in.Name] = r
		}
	}
	switchTo(o, st, d, elsewhere, "DrainSwitchover", "off node "+node+", which is cordoned")
}

// ReasonDiskFull: an instance's data volume is full.
const ReasonDiskFull = "DiskFull"

// diskFull makes Degraded say which volumes are full, whatever else it
// says: it is the thing to act on.
func diskFull(st *v1alpha1.PostgresClusterStatus, set func(typ string, ok bool, reason, msg string)) {
	var full []string
	for _, in := range st.Instances {
		if in.DiskFull {
			full = append(full, in.Name)
		}
	}
	if len(full) > 0 {
		set(ConditionDegraded, true, ReasonDiskFull, fmt.Sprintf("the data volume of %s is full: PostgreSQL cannot write there; free space or grow spec.storage.size", strings.Join(full, ", ")))
	}
}

// recloned is a Warning for an instance whose data was cloned again.
func recloned(before, now []v1alpha1.InstanceStatus) *Event {
	for _, in := range now {
		for _, b := range before {
			if b.Name == in.Name && in.Recloned > b.Recloned {
				return &Event{corev1.EventTypeWarning, "Recloned", fmt.Sprintf("%s could not be rewound onto the primary's timeline; its data was cloned again from the primary", in.Name)}
			}
		}
	}
	return nil
}

// failover judges an unhealthy current primary.
func failover(o Observation, st *v1alpha1.PostgresClusterStatus, d *Decision, why string) {
	c := o.Cluster
	if st.PrimaryUnhealthySince == nil {
		st.PrimaryUnhealthySince = &metav1.Time{Time: o.Now}
	}
	st.Phase = PhasePrimaryDown
	delay := time.Duration(0)
	if c.Spec.FailoverDelay != nil {
		delay = c.Spec.FailoverDelay.Duration
	}
	old := st.TargetPrimary
	stopped := knownStopped(o, old)
	if len(o.Reports) == 0 && !stopped {
		// Blind: no agent answered, the replicas no more than the
		// primary, so what failed is more likely the path to them (the
		// API server's pod proxy) than the primary. Such a look is no
		// evidence: the clock starts again at the next one that hears
		// someone, so that blips of the API server between short faults
		// of the primary never add up to failoverDelay.
		st.PrimaryUnhealthySince = nil
		return
	}
	if o.Reports[old] == nil && !stopped {
		// Silence alone: the reports come through the API server's pod
		// proxy, and when the API server blinks every agent is silent;
		// the first look after it may hear a replica before the primary.
		delay = max(delay, silenceGrace)
	}
	if r := o.Reports[old]; r != nil && r.Role == "down" && r.Leader {
		// Its agent holds the Lease and is starting postgres again
		// (crash recovery, usually under a second). Fencing it in the
		// middle loses what it accepts between coming back and seeing
		// the fence, which its replicas have not received.
		delay = max(delay, restartGrace)
	}
	if o.Now.Sub(st.PrimaryUnhealthySince.Time) < delay {
		return
	}
	next, reason := Candidate(c, old, o.Reports)
	if next == "" {
		d.Event = &Event{corev1.EventTypeWarning, "FailoverImpossible", fmt.Sprintf("primary %s is unhealthy (%s) and no replica can replace it: %s", old, why, reason)}
		return
	}
	since := st.PrimaryUnhealthySince.UTC().Format(time.RFC3339)
	if !stopped {
		// Fence first: while the old primary may still write, a replica
		// can receive WAL the one chosen now would not have, and then
		// could not follow it (and those commits would be lost). No
		// instance is the target until it is known stopped.
		st.TargetPrimary, st.Phase = "", PhaseFailingOver
		st.LastFailover = fmt.Sprintf("%s: %s unhealthy (%s), fencing it before choosing a replica", o.Now.UTC().Format(time.RFC3339), old, why)
		d.Event = &Event{corev1.EventTypeWarning, "Fencing", fmt.Sprintf("primary %s unhealthy (%s) since %s: fencing it before choosing a replica to promote", old, why, since)}
		return
	}
	promote(o, st, d, next, reason, fmt.Sprintf("primary %s unhealthy (%s) since %s", old, why, since))
}

// RecheckBeforeFence asks the primary's agent again (fetch) when d
// would start fencing it, and decides again with that answer. The look's
// reports are gathered together and wait for the slowest agent (up to
// reportTimeout), so the primary's "postgres is not running" may be
// stale: its agent restarts a crashed postgres in place within a second.
// Fencing a primary that is back already is a failover for nothing, and
// with asynchronous replicas it loses what that primary committed since
// it came back and they had not received yet.
func RecheckBeforeFence(o Observation, d Decision, fetch func(instance string) *agent.Report) Decision {
	old := o.Cluster.Status.TargetPrimary
	if old == "" || d.Status.TargetPrimary != "" {
		return d
	}
	fresh := fetch(old)
	if fresh == nil {
		return d // no answer now: no news
	}
	reports := maps.Clone(o.Reports)
	if reports == nil {
		reports = map[string]*agent.Report{}
	}
	reports[old] = fresh
	o.Reports = reports
	return Decide(o)
}

// promote makes next the target primary, the old one being known stopped.
func promote(o Observation, st *v1alpha1.PostgresClusterStatus, d *Decision, next, reason, why string) {
	old := st.CurrentPrimary
	st.TargetPrimary, st.Phase = next, PhaseFailingOver
	st.LastFailover = fmt.Sprintf("%s: %s, promoting %s", o.Now.UTC().Format(time.RFC3339), why, next)
	d.BreakLeaseOf = old
	d.Event = &Event{corev1.EventTypeWarning, "FailingOver", fmt.Sprintf("%s: promoting %s (%s)", why, next, reason)}
}

// chooseAfterFence promotes the best replica once the fenced primary is
// known to take no more writes: its agent says it stopped, its
// container is not running, or its Lease expired (a primary that cannot
// renew stops itself before that). The replicas' positions are final
// then, so the one that received the most has every write any has.
func chooseAfterFence(o Observation, st *v1alpha1.PostgresClusterStatus, d *Decision) {
	old := st.CurrentPrimary
	st.Phase = PhaseFailingOver
	if !knownStopped(o, old) && !o.LeaseExpired {
		return
	}
	next, reason := Candidate(o.Cluster, old, o.Reports)
	if next == "" {
		// No one to promote after all: the old primary is the best there
		// is; let it start again.
		st.TargetPrimary = old
		d.Event = &Event{corev1.EventTypeWarning, "FailoverImpossible", fmt.Sprintf("%s is fenced and no replica can replace it (%s): it is the target primary again", old, reason)}
		return
	}
	promote(o, st, d, next, reason, old+" fenced")
}

// silenceGrace is how long a primary whose agent does not answer, with
// no sign that its pod stopped, must stay silent before a failover, even
// with failoverDelay 0.
const silenceGrace = 3 * time.Second

// restartGrace is how long a primary whose agent holds the Lease and
// restarts postgres in place is given to come back before a failover,
// even with failoverDelay 0 (as Patroni's master_start_timeout).
const restartGrace = 3 * time.Second

// primaryHealth: the agent answers, runs postgres as primary, holds the
// Lease and is ready. Pod readiness is not looked at: it lags.
func primaryHealth(o Observation, instance string) (bool, string) {
	r := o.Reports[instance]
	switch {
	case r == nil:
		return false, "its agent does not answer"
	case r.Role == "down":
		return false, "postgres is not running: " + r.Message
	case r.Role != "primary":
		return false, "it runs as a replica"
	case !r.Leader:
		return false, "it does not hold the primary Lease"
	case !r.Ready:
		return false, "not ready: " + r.Message
	}
	return true, ""
}

// knownStopped: the kubelet reports the instance's agent container not
// running (or the pod gone), or the agent itself says it holds no Lease
// and runs no primary: then no postgres of it takes writes.
func knownStopped(o Observation, instance string) bool {
	if r := o.Reports[instance]; r != nil {
		return !r.Leader && r.Role != "primary"
	}
	if o.Pods == nil {
		return false // not listed: unknown
	}
	p := o.Pods[instance]
	if p == nil {
		return true // a pod is gone once the kubelet stopped its containers
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == "postgres" {
			return cs.State.Running == nil
		}
	}
	return false
}

// Switchover moves the primary to instance to, if the cluster is healthy
// and to is a ready replica that streams from the primary (see switchTo);
// otherwise it says why not.
func Switchover(st *v1alpha1.PostgresClusterStatus, to string, reports map[string]*agent.Report) error {
	if st.Phase != PhaseHealthy && st.Phase != PhaseWaiting && st.Phase != PhaseUpdating {
		return fmt.Errorf("the cluster is %s, not healthy", st.Phase)
	}
	if to == st.CurrentPrimary {
		return fmt.Errorf("%s is already the primary", to)
	}
	for _, in := range st.Instances {
		if in.Name == to {
			if in.Role != "replica" || !in.Ready {
				return fmt.Errorf("%s is not a ready replica (%s)", to, cmp.Or(in.Message, in.Role))
			}
			if r := reports[to]; r == nil || !r.Streaming {
				return fmt.Errorf("%s does not stream from the primary now: it could miss its last commits", to)
			}
			st.TargetPrimary, st.Phase = to, PhaseSwitchingOver
			return nil
		}
	}
	return fmt.Errorf("no instance %s", to)
}

// Candidate chooses the replica to promote: among those whose agents
// answer and run postgres as a replica, the one that received the most
// WAL, then replayed the most. With synchronous replication required, it
// chooses only if enough replicas answered that one of them must hold
// every acknowledged commit.
func Candidate(c *v1alpha1.PostgresCluster, old string, reports map[string]*agent.Report) (string, string) {
	type cand struct {
		name             string
		received, replay uint64
	}
	var cands []cand
	for _, n := range agent.InstanceNames(c) {
		r := reports[n]
		if n == old || r == nil || r.Role != "replica" {
			continue
		}
		// A WAL receiver that restarted reports the start of its segment
		// as received, below what was replayed.
		replay := ParseLSN(r.ReplayedLSN)
		cands = append(cands, cand{n, max(ParseLSN(r.ReceivedLSN), replay), replay})
	}
	if len(cands) == 0 {
		return "", "no replica's agent answers with postgres running"
	}
	if s := c.Spec.Synchronous; s != nil && s.DataDurability != "preferred" {
		replicas := int(c.Spec.Instances) - 1
		if need := replicas - int(s.Number) + 1; len(cands) < need {
			return "", fmt.Sprintf("synchronous replication is required and only %d of the %d replicas answer (%d needed to be sure none misses an acknowledged commit)", len(cands), replicas, need)
		}
	}
	slices.SortFunc(cands, func(a, b cand) int {
		return cmp.Or(cmp.Compare(b.received, a.received), cmp.Compare(b.replay, a.replay), strings.Compare(a.name, b.name))
	})
	best := cands[0]
	return best.name, fmt.Sprintf("received %s, replayed %s", FormatLSN(best.received), FormatLSN(best.replay))
}

// ParseLSN reads PostgreSQL's "X/Y" (0 when empty or bad).
func ParseLSN(s string) uint64 {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0
	}
	return h<<32 | l
}

// FormatLSN writes an LSN as PostgreSQL does.
func FormatLSN(v uint64) string { return fmt.Sprintf("%X/%X", v>>32, v&0xffffffff) }

func instanceStatuses(names []string, reports map[string]*agent.Report, primary string) []v1alpha1.InstanceStatus {
	var head uint64
	if r := reports[primary]; r != nil && r.Role == "primary" {
		head = ParseLSN(r.ReceivedLSN)
	}
	out := make([]v1alpha1.InstanceStatus, 0, len(names))
	for _, n := range names {
		s := v1alpha1.InstanceStatus{Name: n, Role: "unknown", Message: "the agent does not answer"}
		if r := reports[n]; r != nil {
			s = v1alpha1.InstanceStatus{Name: n, Role: r.Role, Ready: r.Ready, Timeline: r.Timeline,
				ReceivedLSN: r.ReceivedLSN, ReplayedLSN: r.ReplayedLSN, PendingRestart: r.PendingRestart, Message: r.Message, Recloned: r.Recloned,
				DiskFull: r.DiskFull}
			if replay := ParseLSN(r.ReplayedLSN); r.Role == "replica" && head > replay && replay > 0 {
				s.LagBytes = int64(head - replay)
			}
		}
		out = append(out, s)
	}
	return out
}

// summarise sets readyInstances and the conditions.
func summarise(c *v1alpha1.PostgresCluster, st *v1alpha1.PostgresClusterStatus, now time.Time) {
	ready := 0
	var notReady []string
	for _, in := range st.Instances {
		if in.Ready {
			ready++
		} else {
			notReady = append(notReady, fmt.Sprintf("%s (%s)", in.Name, cmp.Or(in.Message, in.Role)))
		}
	}
	st.ReadyInstances = fmt.Sprintf("%d/%d", ready, len(st.Instances))
	if st.Phase == PhaseHealthy && len(notReady) > 0 {
		st.Phase = PhaseWaiting
	}
	set := func(typ string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: typ, Status: s, Reason: reason, Message: msg,
			ObservedGeneration: c.Generation, LastTransitionTime: metav1.NewTime(now)})
	}
	waiting := strings.Join(notReady, ", ")
	defer diskFull(st, set)
	switch st.Phase {
	case PhaseHealthy:
		set(ConditionReady, true, PhaseHealthy, fmt.Sprintf("primary %s, %s instances ready", st.CurrentPrimary, st.ReadyInstances))
		set(ConditionProgressing, false, PhaseHealthy, "")
		set(ConditionDegraded, false, PhaseHealthy, "")
	case PhaseUpdating:
		msg := rollingMessage(c, st, waiting)
		primaryReady := false
		for _, in := range st.Instances {
			primaryReady = primaryReady || in.Name == st.CurrentPrimary && in.Ready
		}
		set(ConditionReady, primaryReady, st.Phase, fmt.Sprintf("primary %s, %s instances ready; %s", st.CurrentPrimary, st.ReadyInstances, msg))
		set(ConditionProgressing, true, st.Phase, msg)
		set(ConditionDegraded, false, st.Phase, "")
	case PhaseWaiting:
		set(ConditionReady, false, st.Phase, "waiting for "+waiting)
		set(ConditionProgressing, true, st.Phase, "waiting for "+waiting)
		set(ConditionDegraded, st.Initialized, st.Phase, "not ready: "+waiting)
	default:
		msg := cmp.Or(st.LastFailover, "waiting for "+waiting)
		if st.Phase == PhaseInitializing || st.Phase == PhasePrimaryDown {
			msg = "waiting for primary " + st.TargetPrimary + ": " + waiting
		}
		set(ConditionReady, false, st.Phase, msg)
		set(ConditionProgressing, true, st.Phase, msg)
		set(ConditionDegraded, st.Phase != PhaseInitializing, st.Phase, msg)
	}
}
