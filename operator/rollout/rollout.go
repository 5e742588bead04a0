package rollout

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types and the reasons Conditions sets.
const (
	ConditionReady       = "Ready"
	ConditionProgressing = "Progressing"
	ConditionDegraded    = "Degraded"

	ReasonRolledOut        = "RolledOut"
	ReasonRollingOut       = "RollingOut"
	ReasonDeploymentFailed = "DeploymentFailed"
	ReasonAsExpected       = "AsExpected"
)

// Component is one Deployment of the object, by the name the status
// uses for it (a process, a pool).
type Component struct {
	Name string
	// Deployment as observed; nil when it does not exist yet.
	Deployment *appsv1.Deployment
	// Want is the replica count expected when there is no Deployment
	// yet (0 when something else, an autoscaler, decides it).
	Want int32
	// Scaled is set when something else (an autoscaler) decides the
	// count, and MinAvailable is then the fewest available pods that
	// make the component ready: pods a scale-up adds are not ready at
	// once, and that is not the object becoming unready.
	Scaled       bool
	MinAvailable int32
}

// Observed is one component's counts.
type Observed struct {
	Name                                     string
	Replicas, ReadyReplicas, UpdatedReplicas int32
}

// Summary is the rollout state of all components.
type Summary struct {
	Components     []Observed
	Ready, Desired int32
	Waiting        []string // components still rolling out, with counts
	Failed         []string // components that cannot make progress, with why
}

// Summarise counts the components and finds what is not rolled out.
func Summarise(components []Component) Summary {
	var s Summary
	for _, c := range components {
		o := Observed{Name: c.Name}
		d := c.Deployment
		switch {
		case d == nil:
			s.Waiting = append(s.Waiting, c.Name+" (no Deployment yet)")
			o.Replicas = c.Want
		default:
			o.Replicas = 1
			if d.Spec.Replicas != nil {
				o.Replicas = *d.Spec.Replicas
			}
			o.ReadyReplicas, o.UpdatedReplicas = d.Status.ReadyReplicas, d.Status.UpdatedReplicas
			if msg := Failure(d); msg != "" {
				s.Failed = append(s.Failed, c.Name+": "+msg)
			} else if c.Scaled && !Available(d, c.MinAvailable) {
				s.Waiting = append(s.Waiting, fmt.Sprintf("%s (%d/%d updated and available, %d needed)", c.Name, min(d.Status.UpdatedReplicas, d.Status.AvailableReplicas), o.Replicas, c.MinAvailable))
			} else if !c.Scaled && !RolledOut(d, o.Replicas) {
				s.Waiting = append(s.Waiting, fmt.Sprintf("%s (%d/%d updated and ready)", c.Name, min(o.UpdatedReplicas, o.ReadyReplicas), o.Replicas))
			}
		}
		s.Ready += o.ReadyReplicas
		s.Desired += o.Replicas
		s.Components = append(s.Components, o)
	}
	return s
}

// Pods is "ready/desired".
func (s Summary) Pods() string { return fmt.Sprintf("%d/%d", s.Ready, s.Desired) }

// Blocker is a problem outside the Deployments that keeps the object from
// being ready (a missing ConfigMap, an unreachable broker).
type Blocker struct {
	Reason, Message string
}

// Refused is the blocker of children the API server refused or another
// controller holds (operator.Observed.Refused), or nil when there are
// none.
func Refused(o interface{ Refused() (string, string) }) *Blocker {
	reason, msg := o.Refused()
	if reason == "" {
		return nil
	}
	return &Blocker{Reason: reason, Message: msg}
}

// Conditions sets Ready, Progressing and Degraded on conds from the
// summary; a blocker, when not nil, wins over the Deployments' state.
// Transition times change only when a condition's status does.
func Conditions(conds *[]metav1.Condition, generation int64, now metav1.Time, s Summary, blocker *Blocker) {
	set := func(typ string, ok bool, reason, msg string) {
		st := metav1.ConditionFalse
		if ok {
			st = metav1.ConditionTrue
		}
		meta.SetStatusCondition(conds, metav1.Condition{
			Type: typ, Status: st, Reason: reason, Message: msg,
			ObservedGeneration: generation, LastTransitionTime: now,
		})
	}
	switch {
	case blocker != nil:
		set(ConditionDegraded, true, blocker.Reason, blocker.Message)
		set(ConditionProgressing, false, blocker.Reason, blocker.Message)
		set(ConditionReady, false, blocker.Reason, blocker.Message)
	case len(s.Failed) > 0:
		msg := strings.Join(s.Failed, "; ")
		set(ConditionDegraded, true, ReasonDeploymentFailed, msg)
		set(ConditionProgressing, false, ReasonDeploymentFailed, msg)
		set(ConditionReady, false, ReasonDeploymentFailed, msg)
	case len(s.Waiting) > 0:
		msg := "waiting for " + strings.Join(s.Waiting, ", ")
		set(ConditionDegraded, false, ReasonAsExpected, "")
		set(ConditionProgressing, true, ReasonRollingOut, msg)
		set(ConditionReady, false, ReasonRollingOut, msg)
	default:
		msg := fmt.Sprintf("%d/%d pods ready", s.Ready, s.Desired)
		set(ConditionDegraded, false, ReasonAsExpected, "")
		set(ConditionProgressing, false, ReasonRolledOut, msg)
		set(ConditionReady, true, ReasonRolledOut, msg)
	}
}

// RolledOut reports whether the Deployment's controller has seen its
// latest spec and every pod runs the current template and is available.
func RolledOut(d *appsv1.Deployment, want int32) bool {
	s := d.Status
	return s.ObservedGeneration >= d.Generation &&
		s.UpdatedReplicas == want && s.Replicas == want &&
		s.AvailableReplicas == want && s.ReadyReplicas == want
}

// Available reports whether the Deployment's controller has seen its
// latest spec, no pod runs an old template, and at least least pods are
// available: the readiness of a component whose count an autoscaler
// decides.
func Available(d *appsv1.Deployment, least int32) bool {
	s := d.Status
	return s.ObservedGeneration >= d.Generation &&
		s.UpdatedReplicas == s.Replicas && s.AvailableReplicas >= least
}

// Failure is the reason a Deployment cannot make progress, or "".
func Failure(d *appsv1.Deployment) string {
	for _, c := range d.Status.Conditions {
		switch {
		case c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue:
			return c.Message
		case c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded":
			return c.Message
		}
	}
	return ""
}
