package celery

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	"github.com/setpoint-dev/setpoint/operators/celery/broker"
)

// ConditionScaleDownSafe says whether the workers' Celery lets a scale-down
// lose nothing. Celery before 5.3 runs a kombu (before 5.3) whose Redis
// transport, when a worker shuts down while its BRPOP is waiting, drops
// the message that BRPOP takes in that instant: it is then neither in the
// queue nor held unacknowledged, and never runs (celery/kombu#1733).
// Every scale-down is such a shutdown, so the autoscaler makes the loss
// likely; the condition names the versions and the fix. RabbitMQ is not
// affected and gets no condition.
const (
	ConditionScaleDownSafe = "ScaleDownSafe"
	ReasonCeleryTooOld     = "CeleryTooOld"
	ReasonCelerySupported  = "Supported"
)

// minSafeCelery is the first Celery release that requires kombu 5.3.
var minSafeCelery = [2]int{5, 3}

// scaleDownSafe is the condition for the workers heard, or nil when there
// is nothing to say (another broker, or no worker heard yet).
func scaleDownSafe(redisBroker bool, workers []broker.Worker, generation int64) *metav1.Condition {
	if !redisBroker || len(workers) == 0 {
		return nil
	}
	var old []string
	for _, w := range workers {
		if v, ok := majorMinor(w.Version); ok && (v[0] < minSafeCelery[0] || v[0] == minSafeCelery[0] && v[1] < minSafeCelery[1]) && !slices.Contains(old, w.Version) {
			old = append(old, w.Version)
		}
	}
	c := &metav1.Condition{Type: ConditionScaleDownSafe, Status: metav1.ConditionTrue, Reason: ReasonCelerySupported,
		Message: "the workers run Celery 5.3 or later", ObservedGeneration: generation}
	if len(old) > 0 {
		// Versions, not worker names: the message stays the same while
		// pools scale, so it costs no status write.
		slices.Sort(old)
		c.Status, c.Reason = metav1.ConditionFalse, ReasonCeleryTooOld
		c.Message = fmt.Sprintf("workers run Celery %s: with Redis, its kombu (before 5.3) loses a task that arrives while a worker shuts down (celery/kombu#1733), and every scale-down shuts one down; run Celery 5.3 or later",
			strings.Join(old, ", "))
	}
	return c
}

func majorMinor(version string) ([2]int, bool) {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return [2]int{}, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor := parts[1]
	if i := strings.IndexFunc(minor, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minor = minor[:i] // 3rc1
	}
	n, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil {
		return [2]int{}, false
	}
	return [2]int{major, n}, true
}

// ownWorkers are the workers of cc's pools among those the broker's
// heartbeats tell of: another app's workers on the same broker are not
// this cluster's to judge.
func ownWorkers(cc *v1alpha1.CeleryCluster, workers []broker.Worker) []broker.Worker {
	var own []broker.Worker
	for _, w := range workers {
		for _, p := range cc.Spec.Pools {
			if strings.HasPrefix(w.Hostname, WorkerHostname(p, ComponentName(cc, p.Name)+"-")) {
				own = append(own, w)
				break
			}
		}
	}
	return own
}

// setScaleDownSafe puts c in conds, or removes the condition when c is nil
// because the broker is not Redis; with no worker heard it keeps the last.
func setScaleDownSafe(conds *[]metav1.Condition, c *metav1.Condition, redisBroker bool) {
	switch {
	case c != nil:
		meta.SetStatusCondition(conds, *c)
	case !redisBroker:
		meta.RemoveStatusCondition(conds, ConditionScaleDownSafe)
	}
}
