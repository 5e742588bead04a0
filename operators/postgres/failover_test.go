package postgres

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
	"github.com/setpoint-dev/setpoint/operators/postgres/agent"
)

var now = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func pgCluster(instances int32, mutate ...func(*v1alpha1.PostgresCluster)) *v1alpha1.PostgresCluster {
	c := &v1alpha1.PostgresCluster{ObjectMeta: metav1.ObjectMeta{Name: "pg", Namespace: "ns", Generation: 1},
		Spec: v1alpha1.PostgresClusterSpec{Instances: instances, ImageName: "postgres:15"}}
	for _, m := range mutate {
		m(c)
	}
	return c
}

func primaryIs(name string) func(*v1alpha1.PostgresCluster) {
	return func(c *v1alpha1.PostgresCluster) {
		c.Status.TargetPrimary, c.Status.CurrentPrimary, c.Status.Initialized = name, name, true
	}
}

func primary(lsn string) *agent.Report {
	return &agent.Report{Role: "primary", Leader: true, Ready: true, Timeline: 1, ReceivedLSN: lsn, ReplayedLSN: lsn}
}

func replica(received, replayed string) *agent.Report {
	return &agent.Report{Role: "replica", Ready: true, Timeline: 1, ReceivedLSN: received, ReplayedLSN: replayed, Streaming: true}
}

func notStreaming(r *agent.Report) *agent.Report {
	r.Streaming = false
	return r
}

func pending(r *agent.Report) *agent.Report {
	r.PendingRestart = []string{"max_connections"}
	return r
}

func TestCandidate(t *testing.T) {
	sync := func(n int32, durability string) func(*v1alpha1.PostgresCluster) {
		return func(c *v1alpha1.PostgresCluster) {
			c.Spec.Synchronous = &v1alpha1.SynchronousSpec{Number: n, DataDurability: durability}
		}
	}
	for _, tc := range []struct {
		name    string
		cluster *v1alpha1.PostgresCluster
		reports map[string]*agent.Report
		want    string
	}{
		{"most received wins", pgCluster(3), map[string]*agent.Report{
			"pg-2": replica("0/5000000", "0/5000000"), "pg-3": replica("0/6000000", "0/4000000")}, "pg-3"},
		{"then most replayed", pgCluster(3), map[string]*agent.Report{
			"pg-2": replica("0/6000000", "0/5000000"), "pg-3": replica("0/6000000", "0/4000000")}, "pg-2"},
		{"LSNs compare as numbers, not strings", pgCluster(3), map[string]*agent.Report{
			"pg-2": replica("0/9000000", "0/9000000"), "pg-3": replica("1/0", "1/0")}, "pg-3"},
		{"then by name, so the choice is stable", pgCluster(3), map[string]*agent.Report{
			"pg-3": replica("0/6000000", "0/6000000"), "pg-2": replica("0/6000000", "0/6000000")}, "pg-2"},
		{"a restarted receiver's received LSN is below its replayed one", pgCluster(3), map[string]*agent.Report{
			"pg-2": replica("0/5000000", "0/5000060"), "pg-3": replica("0/5000010", "0/5000010")}, "pg-2"},
		{"the old primary is never chosen", pgCluster(2), map[string]*agent.Report{
			"pg-1": replica("0/9000000", "0/9000000")}, ""},
		{"an agent whose postgres is down is not a candidate", pgCluster(3), map[string]*agent.Report{
			"pg-2": {Role: "down"}, "pg-3": replica("0/1000000", "0/1000000")}, "pg-3"},
		{"none answers", pgCluster(3), map[string]*agent.Report{}, ""},
		{"synchronous required: too few answers to be sure", pgCluster(4, sync(1, "required")), map[string]*agent.Report{
			"pg-2": replica("0/5000000", "0/5000000"), "pg-3": replica("0/5000000", "0/5000000")}, ""},
		{"synchronous required: enough answer", pgCluster(3, sync(1, "required")), map[string]*agent.Report{
			"pg-2": replica("0/5000000", "0/5000000"), "pg-3": replica("0/6000000", "0/6000000")}, "pg-3"},
		{"synchronous preferred: any answer will do", pgCluster(4, sync(1, "preferred")), map[string]*agent.Report{
			"pg-2": replica("0/5000000", "0/5000000")}, "pg-2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := Candidate(tc.cluster, "pg-1", tc.reports)
			if got != tc.want {
				t.Errorf("Candidate = %q (%s), want %q", got, why, tc.want)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	deadPod := &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "postgres",
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137}}}}}}
	runningPod := &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "postgres",
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}}
	delay := func(d time.Duration) func(*v1alpha1.PostgresCluster) {
		return func(c *v1alpha1.PostgresCluster) { c.Spec.FailoverDelay = &metav1.Duration{Duration: d} }
	}
	fencing := func(c *v1alpha1.PostgresCluster) { c.Status.TargetPrimary = "" }
	unhealthySince := func(ago time.Duration) func(*v1alpha1.PostgresCluster) {
		return func(c *v1alpha1.PostgresCluster) { c.Status.PrimaryUnhealthySince = &metav1.Time{Time: now.Add(-ago)} }
	}
	for _, tc := range []struct {
		name          string
		cluster       *v1alpha1.PostgresCluster
		reports       map[string]*agent.Report
		pods          map[string]*corev1.Pod
		target, phase string
		breakLease    bool
	}{
		{"a new cluster targets its first instance", pgCluster(3), nil, nil, "pg-1", PhaseInitializing, false},
		{"the first primary is recorded once it reports", pgCluster(1, func(c *v1alpha1.PostgresCluster) { c.Status.TargetPrimary = "pg-1" }),
			map[string]*agent.Report{"pg-1": primary("0/3000000")}, nil, "pg-1", PhaseHealthy, false},
		{"healthy", pgCluster(2, primaryIs("pg-1")),
			map[string]*agent.Report{"pg-1": primary("0/3000000"), "pg-2": replica("0/3000000", "0/3000000")}, nil, "pg-1", PhaseHealthy, false},
		{"a replica down leaves the primary be", pgCluster(2, primaryIs("pg-1")),
			map[string]*agent.Report{"pg-1": primary("0/3000000")}, nil, "pg-1", PhaseWaiting, false},
		{"primary unreachable, its container dead: fail over and break its Lease", pgCluster(2, primaryIs("pg-1")),
			map[string]*agent.Report{"pg-2": replica("0/3000000", "0/3000000")}, map[string]*corev1.Pod{"pg-1": deadPod}, "pg-2", PhaseFailingOver, true},
		{"primary silent but its container runs (an API server blip?): wait", pgCluster(2, primaryIs("pg-1")),
			map[string]*agent.Report{"pg-2": replica("0/3000000", "0/3000000")}, map[string]*corev1.Pod{"pg-1": runningPod}, "pg-1", PhasePrimaryDown, false},
		{"primary silent for silenceGrace, its container running (cut off?): fence it first", pgCluster(2, primaryIs("pg-1"), unhealthySince(silenceGrace)),
			map[string]*agent.Report{"pg-2": replica("0/3000000", "0/3000000")}, map[string]*corev1.Pod{"pg-1": runningPod}, "", PhaseFailingOver, false},
		{"fencing, the old primary not known stopped: wait", pgCluster(3, primaryIs("pg-1"), fencing),
			map[string]*agent.Report{"pg-2": replica("0/3000000", "0/3000000")}, map[string]*corev1.Pod{"pg-1": runningPod}, "", PhaseFailingOver, false},
		{"fencing, its agent says it stopped: promote the replica that received the most since", pgCluster(3, primaryIs("pg-1"), fencing),
			map[string]*agent.Report{"pg-1": {Role: "down"}, "pg-2": replica("0/3000000", "0/3000000"), "pg-3": replica("0/3000100", "0/3000000")}, nil, "pg-3", PhaseFailingOver, true},
		{"fencing, no replica to promote: the old primary is the target again", pgCluster(2, primaryIs("pg-1"), fencing),
			map[string]*agent.Report{"pg-1": {Role: "down"}}, nil, "pg-1", PhaseFailingOver, false},
		{"primary without the Lease has fenced itself: break it", pgCluster(2, primaryIs("pg-1")),
			map[string]*agent.Report{"pg-1": {Role: "down"}, "pg-2": replica("0/3000000", "0/3000000")}, nil, "pg-2", PhaseFailingOver, true},
		{"within failoverDelay: wait", pgCluster(2, primaryIs("pg-1"), delay(10*time.Second), unhealthySince(5*time.Second)),
			map[string]*agent.Report{"pg-2": replica("0/3000000", "0/3000000")}, nil, "pg-1", PhasePrimaryDown, false},
		{"after failoverDelay: fail over (fencing first when the old one may still run)", pgCluster(2, primaryIs("pg-1"), delay(10*time.Second), unhealthySince(11*time.Second)),
			map[string]*agent.Report{"pg-2": replica("0/3000000", "0/3000000")}, map[string]*corev1.Pod{"pg-1": runningPod}, "", PhaseFailingOver, false},
		{"after failoverDelay, the old one stopped: promote at once", pgCluster(2, primaryIs("pg-1"), delay(10*time.Second), unhealthySince(11*time.Second)),
			map[string]*agent.Report{"pg-2": replica("0/3000000", "0/3000000")}, map[string]*corev1.Pod{"pg-1": deadPod}, "pg-2", PhaseFailingOver, true},
		{"primary stopped by a full volume: no failover", pgCluster(2, primaryIs("pg-1")),
			map[string]*agent.Report{"pg-1": {Role: "down", DiskFull: true}, "pg-2": replica("0/3000000", "0/3000000")}, map[string]*corev1.Pod{"pg-1": runningPod}, "pg-1", PhasePrimaryDown, false},
		{"no candidate: stay, unhealthy", pgCluster(2, primaryIs("pg-1")), map[string]*agent.Report{"pg-2": {Role: "down"}}, nil, "pg-1", PhasePrimaryDown, false},
		{"pods not listed (unknown, not gone): fence first", pgCluster(2, primaryIs("pg-1"), delay(10*time.Second), unhealthySince(11*time.Second)),
			map[string]*agent.Report{"pg-2": replica("0/3000000", "0/3000000")}, nil, "", PhaseFailingOver, false},
		{"a promotion under way is waited for", pgCluster(2, primaryIs("pg-1"), func(c *v1alpha1.PostgresCluster) { c.Status.TargetPrimary = "pg-2" }),
			map[string]*agent.Report{"pg-2": replica("0/3000000", "0/3000000")}, map[string]*corev1.Pod{"pg-1": runningPod}, "pg-2", PhaseFailingOver, false},
		{"an old primary seen stopped only during the promotion: break its Lease then", pgCluster(2, primaryIs("pg-1"), func(c *v1alpha1.PostgresCluster) { c.Status.TargetPrimary = "pg-2" }),
			map[string]*agent.Report{"pg-1": {Role: "down"}, "pg-2": replica("0/3000000", "0/3000000")}, nil, "pg-2", PhaseFailingOver, true},
		{"a primary with a pending restart hands over once every replica restarted", pgCluster(2, primaryIs("pg-1")),
			map[string]*agent.Report{"pg-1": pending(primary("0/3000000")), "pg-2": replica("0/3000000", "0/3000000")}, nil, "pg-2", PhaseSwitchingOver, false},
		{"a restarted replica that does not stream yet is waited for", pgCluster(2, primaryIs("pg-1")),
			map[string]*agent.Report{"pg-1": pending(primary("0/3000000")), "pg-2": notStreaming(replica("0/3000000", "0/3000000"))}, nil, "pg-1", PhaseHealthy, false},
		{"replicas restart first", pgCluster(2, primaryIs("pg-1")),
			map[string]*agent.Report{"pg-1": pending(primary("0/3000000")), "pg-2": pending(replica("0/3000000", "0/3000000"))}, nil, "pg-1", PhaseHealthy, false},
		{"the promoted replica becomes current", pgCluster(2, primaryIs("pg-1"), func(c *v1alpha1.PostgresCluster) { c.Status.TargetPrimary = "pg-2" }),
			map[string]*agent.Report{"pg-2": primary("0/3000000")}, nil, "pg-2", PhaseWaiting, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(Observation{Cluster: tc.cluster, Reports: tc.reports, Pods: tc.pods, Now: now})
			if d.Status.TargetPrimary != tc.target || d.Status.Phase != tc.phase || (d.BreakLeaseOf == "pg-1") != tc.breakLease {
				t.Errorf("target %q phase %q break %q; want %q %q %v (event %+v)", d.Status.TargetPrimary, d.Status.Phase, d.BreakLeaseOf,
					tc.target, tc.phase, tc.breakLease, d.Event)
			}
		})
	}
}

func TestDecideStatus(t *testing.T) {
	c := pgCluster(3, primaryIs("pg-1"))
	d := Decide(Observation{Cluster: c, Now: now, Reports: map[string]*agent.Report{
		"pg-1": primary("0/3000100"), "pg-2": replica("0/3000100", "0/3000000")}})
	st := d.Status
	if st.ReadyInstances != "2/3" || st.CurrentPrimary != "pg-1" {
		t.Errorf("ready %s primary %s", st.ReadyInstances, st.CurrentPrimary)
	}
	if got := st.Instances[1]; got.LagBytes != 0x100 || got.Role != "replica" {
		t.Errorf("pg-2: %+v, want a lag of 256 bytes", got)
	}
	if got := st.Instances[2]; got.Role != "unknown" || got.Ready {
		t.Errorf("pg-3 (no report): %+v", got)
	}
	for _, typ := range []string{ConditionReady, ConditionProgressing, ConditionDegraded} {
		found := false
		for _, cond := range st.Conditions {
			found = found || cond.Type == typ
		}
		if !found {
			t.Errorf("no %s condition", typ)
		}
	}
}

func TestDrainSwitchover(t *testing.T) {
	on := func(node string) *corev1.Pod { return &corev1.Pod{Spec: corev1.PodSpec{NodeName: node}} }
	for _, tc := range []struct {
		name     string
		cordoned bool
		pods     map[string]*corev1.Pod
		want     string
	}{
		{"not cordoned", false, map[string]*corev1.Pod{"pg-1": on("a"), "pg-2": on("b"), "pg-3": on("c")}, "pg-1"},
		{"cordoned: to a replica elsewhere", true, map[string]*corev1.Pod{"pg-1": on("a"), "pg-2": on("a"), "pg-3": on("c")}, "pg-3"},
		{"cordoned, every replica on the same node: stay", true, map[string]*corev1.Pod{"pg-1": on("a"), "pg-2": on("a"), "pg-3": on("a")}, "pg-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(Observation{Cluster: pgCluster(3, primaryIs("pg-1")), Now: now, Pods: tc.pods, Cordoned: tc.cordoned,
				Reports: map[string]*agent.Report{"pg-1": primary("0/3000000"), "pg-2": replica("0/3000000", "0/3000000"), "pg-3": replica("0/3000000", "0/3000000")}})
			if d.Status.TargetPrimary != tc.want {
				t.Errorf("target %s, want %s", d.Status.TargetPrimary, tc.want)
			}
		})
	}
}

func TestReclonedIsAWarning(t *testing.T) {
	c := pgCluster(2, primaryIs("pg-1"))
	c.Status.Instances = []v1alpha1.InstanceStatus{{Name: "pg-1"}, {Name: "pg-2", Recloned: 0}}
	r := replica("0/3000000", "0/3000000")
	r.Recloned = 1
	d := Decide(Observation{Cluster: c, Now: now, Reports: map[string]*agent.Report{"pg-1": primary("0/3000000"), "pg-2": r}})
	if d.Event == nil || d.Event.Reason != "Recloned" || d.Event.Type != corev1.EventTypeWarning {
		t.Errorf("event %+v", d.Event)
	}
}

func TestSwitchover(t *testing.T) {
	healthy := func() *v1alpha1.PostgresClusterStatus {
		return &v1alpha1.PostgresClusterStatus{Phase: PhaseHealthy, CurrentPrimary: "pg-1", TargetPrimary: "pg-1",
			Instances: []v1alpha1.InstanceStatus{{Name: "pg-1", Role: "primary", Ready: true}, {Name: "pg-2", Role: "replica", Ready: true},
				{Name: "pg-3", Role: "replica", Ready: false}}}
	}
	reports := map[string]*agent.Report{"pg-1": primary("0/3000000"), "pg-2": replica("0/3000000", "0/3000000"), "pg-3": {Role: "replica"}}
	st := healthy()
	if err := Switchover(st, "pg-2", reports); err != nil || st.TargetPrimary != "pg-2" || st.Phase != PhaseSwitchingOver {
		t.Errorf("to a ready replica: %v, %+v", err, st)
	}
	for _, to := range []string{"pg-1", "pg-3", "pg-9"} {
		st := healthy()
		if err := Switchover(st, to, reports); err == nil || st.TargetPrimary != "pg-1" {
			t.Errorf("to %s: accepted (%+v)", to, st)
		}
	}
	st = healthy()
	st.Phase = PhaseFailingOver
	if err := Switchover(st, "pg-2", reports); err == nil {
		t.Errorf("accepted during a failover")
	}
	st = healthy()
	notYet := map[string]*agent.Report{"pg-2": replica("0/3000000", "0/3000000")}
	notYet["pg-2"].Streaming = false
	if err := Switchover(st, "pg-2", notYet); err == nil || st.TargetPrimary != "pg-1" {
		t.Errorf("to a replica not streaming yet: accepted (%+v)", st)
	}
}

func TestLSN(t *testing.T) {
	for _, s := range []string{"0/0", "0/3000060", "1/0", "16/B374D848"} {
		if got := FormatLSN(ParseLSN(s)); got != s {
			t.Errorf("%s → %s", s, got)
		}
	}
	if ParseLSN("") != 0 || ParseLSN("x/1") != 0 {
		t.Error("bad LSNs parse as something")
	}
}

// A full volume is what Degraded names, and a Warning says why there is
// no failover.
func TestDiskFull(t *testing.T) {
	c := pgCluster(2, primaryIs("pg-1"))
	d := Decide(Observation{Cluster: c, Now: now, Reports: map[string]*agent.Report{
		"pg-1": {Role: "down", Leader: true, DiskFull: true, Message: "postgres does not answer yet"}, "pg-2": replica("0/3000000", "0/3000000")}})
	deg := meta.FindStatusCondition(d.Status.Conditions, ConditionDegraded)
	if deg == nil || deg.Status != metav1.ConditionTrue || deg.Reason != ReasonDiskFull || !strings.Contains(deg.Message, "pg-1") {
		t.Errorf("Degraded %+v, want DiskFull naming pg-1", deg)
	}
	if d.Event == nil || d.Event.Reason != ReasonDiskFull || d.Event.Type != corev1.EventTypeWarning {
		t.Errorf("event %+v", d.Event)
	}
	if !d.Status.Instances[0].DiskFull {
		t.Errorf("pg-1's status does not say its volume is full")
	}
}

// A primary cut off (its container running, its agent silent) is fenced,
// and a replica is chosen once its Lease expired: it stopped itself by
// then.
// A look in which no agent answers (the API server's proxy down) is no
// evidence against the primary: short faults of the primary on either
// side of an API server blip do not add up to failoverDelay.
func TestBlindLooksStopTheClock(t *testing.T) {
	running := &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "postgres",
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}}
	c := pgCluster(2, primaryIs("pg-1"))
	c.Spec.FailoverDelay = &metav1.Duration{Duration: 8 * time.Second}
	c.Status.PrimaryUnhealthySince = &metav1.Time{Time: now.Add(-20 * time.Second)}
	d := Decide(Observation{Cluster: c, Now: now, Reports: map[string]*agent.Report{}})
	if d.Status.PrimaryUnhealthySince != nil || d.Status.TargetPrimary != "pg-1" {
		t.Fatalf("blind look: unhealthy since %v, target %q; want no mark, pg-1", d.Status.PrimaryUnhealthySince, d.Status.TargetPrimary)
	}
	// The next look hears the replica only: the clock starts now.
	c.Status = d.Status
	later := now.Add(time.Second)
	d = Decide(Observation{Cluster: c, Now: later, Reports: map[string]*agent.Report{"pg-2": replica("0/3000000", "0/3000000")},
		Pods: map[string]*corev1.Pod{"pg-1": running}})
	if d.Status.TargetPrimary != "pg-1" || d.Status.PrimaryUnhealthySince == nil || !d.Status.PrimaryUnhealthySince.Time.Equal(later) {
		t.Errorf("then the replica alone: target %q, unhealthy since %v; want pg-1, since %s", d.Status.TargetPrimary, d.Status.PrimaryUnhealthySince, later)
	}
}

func TestFencedPrimaryIsReplacedOnceItsLeaseExpired(t *testing.T) {
	c := pgCluster(2, primaryIs("pg-1"), func(c *v1alpha1.PostgresCluster) { c.Status.TargetPrimary = "" })
	running := &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "postgres", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}}
	o := Observation{Cluster: c, Now: now, Reports: map[string]*agent.Report{"pg-2": replica("0/3000000", "0/3000000")}, Pods: map[string]*corev1.Pod{"pg-1": running}}
	if d := Decide(o); d.Status.TargetPrimary != "" {
		t.Fatalf("promoted %q before the Lease expired", d.Status.TargetPrimary)
	}
	o.LeaseExpired = true
	if d := Decide(o); d.Status.TargetPrimary != "pg-2" {
		t.Errorf("target %q once the Lease expired, want pg-2", d.Status.TargetPrimary)
	}
}

// TestRecheckBeforeFence: a look that would fence the primary for
// "postgres is not running" asks its agent again; a primary back already
// is not fenced, one still down is, and no answer changes nothing.
func TestRecheckBeforeFence(t *testing.T) {
	down := &agent.Report{Role: "down", Leader: true, Message: "postgres exited"}
	c := pgCluster(2, primaryIs("pg-1"))
	c.Status.PrimaryUnhealthySince = &metav1.Time{Time: now.Add(-restartGrace)}
	o := Observation{Cluster: c, Now: now, Reports: map[string]*agent.Report{"pg-1": down, "pg-2": replica("0/3000000", "0/3000000")}}
	d := Decide(o)
	if d.Status.TargetPrimary != "" {
		t.Fatalf("the look alone: target %q, want fencing (down for restartGrace)", d.Status.TargetPrimary)
	}
	for _, tc := range []struct {
		name  string
		fresh *agent.Report
		want  string
	}{
		{"back already", primary("0/3000100"), "pg-1"},
		{"still down", down, ""},
		{"no answer", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var asked []string
			got := RecheckBeforeFence(o, d, func(instance string) *agent.Report {
				asked = append(asked, instance)
				return tc.fresh
			})
			if got.Status.TargetPrimary != tc.want || !slices.Equal(asked, []string{"pg-1"}) {
				t.Errorf("target %q after asking %v, want %q after asking pg-1", got.Status.TargetPrimary, asked, tc.want)
			}
			if o.Reports["pg-1"] != down {
				t.Error("the look's reports were changed")
			}
		})
	}
	// A decision that does not fence asks no one.
	healthy := Observation{Cluster: c, Now: now, Reports: map[string]*agent.Report{"pg-1": primary("0/3000000")}}
	RecheckBeforeFence(healthy, Decide(healthy), func(string) *agent.Report {
		t.Error("asked although nothing is fenced")
		return nil
	})
}

// TestARestartingPrimaryGetsItsGrace: a primary whose agent holds the
// Lease and restarts postgres is given restartGrace even with
// failoverDelay 0; one down for longer is fenced.
func TestARestartingPrimaryGetsItsGrace(t *testing.T) {
	down := &agent.Report{Role: "down", Leader: true, Message: "postgres does not answer yet"}
	for _, tc := range []struct {
		name string
		for_ time.Duration
		want string
	}{
		{"just seen down", 0, "pg-1"},
		{"down for less than the grace", restartGrace - time.Second, "pg-1"},
		{"down for the grace", restartGrace, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := pgCluster(2, primaryIs("pg-1"))
			if tc.for_ > 0 {
				c.Status.PrimaryUnhealthySince = &metav1.Time{Time: now.Add(-tc.for_)}
			}
			d := Decide(Observation{Cluster: c, Now: now, Reports: map[string]*agent.Report{"pg-1": down, "pg-2": replica("0/3000000", "0/3000000")}})
			if d.Status.TargetPrimary != tc.want {
				t.Errorf("target %q, want %q", d.Status.TargetPrimary, tc.want)
			}
		})
	}
}
