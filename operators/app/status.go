package app

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/apps/v1alpha1"
)

// Condition types and reasons of an App.
const (
	ConditionReady       = "Ready"
	ConditionProgressing = "Progressing"
	ConditionDegraded    = "Degraded"

	ReasonRolledOut        = "RolledOut"
	ReasonRollingOut       = "RollingOut"
	ReasonConfigMissing    = "ConfigMissing"
	ReasonDeploymentFailed = "DeploymentFailed"
	ReasonAsExpected       = "AsExpected"
)

// Status computes the App's status from its Deployments (by process
// name; a missing one is not created yet) and the required configuration
// that does not exist. Conditions keep their transition time unless their
// status changes; now stamps the ones that change.
func Status(app *v1alpha1.App, deployments map[string]*appsv1.Deployment, missing []string, now metav1.Time) v1alpha1.AppStatus {
	st := v1alpha1.AppStatus{
		ObservedGeneration: app.Generation,
		URLs:               URLs(app),
		Conditions:         append([]metav1.Condition(nil), app.Status.Conditions...),
	}
	if len(st.URLs) > 0 {
		st.URL = st.URLs[0]
	}
	var ready, desired int32
	var waiting, failed []string
	for _, p := range app.Spec.Processes {
		ps := v1alpha1.ProcessStatus{Name: p.Name}
		d := deployments[p.Name]
		switch {
		case d == nil:
			waiting = append(waiting, p.Name+" (no Deployment yet)")
			if p.Autoscaling == nil {
				ps.Replicas = replicas(p)
			}
		default:
			ps.Replicas = 1
			if d.Spec.Replicas != nil {
				ps.Replicas = *d.Spec.Replicas
			}
			ps.ReadyReplicas = d.Status.ReadyReplicas
			ps.UpdatedReplicas = d.Status.UpdatedReplicas
			if msg := deploymentFailure(d); msg != "" {
				failed = append(failed, p.Name+": "+msg)
			} else if !rolledOut(d, ps.Replicas) {
				waiting = append(waiting, fmt.Sprintf("%s (%d/%d updated and ready)", p.Name, min(ps.UpdatedReplicas, ps.ReadyReplicas), ps.Replicas))
			}
		}
		ready += ps.ReadyReplicas
		desired += ps.Replicas
		st.Processes = append(st.Processes, ps)
	}
	st.Replicas = fmt.Sprintf("%d/%d", ready, desired)

	set := func(typ string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: typ, Status: s, Reason: reason, Message: msg,
			ObservedGeneration: app.Generation, LastTransitionTime: now,
		})
	}
	switch {
	case len(missing) > 0:
		msg := "missing " + strings.Join(missing, ", ")
		set(ConditionDegraded, true, ReasonConfigMissing, msg)
		set(ConditionProgressing, false, ReasonConfigMissing, msg)
		set(ConditionReady, false, ReasonConfigMissing, msg)
	case len(failed) > 0:
		msg := strings.Join(failed, "; ")
		set(ConditionDegraded, true, ReasonDeploymentFailed, msg)
		set(ConditionProgressing, false, ReasonDeploymentFailed, msg)
		set(ConditionReady, false, ReasonDeploymentFailed, msg)
	case len(waiting) > 0:
		msg := "waiting for " + strings.Join(waiting, ", ")
		set(ConditionDegraded, false, ReasonAsExpected, "")
		set(ConditionProgressing, true, ReasonRollingOut, msg)
		set(ConditionReady, false, ReasonRollingOut, msg)
	default:
		msg := fmt.Sprintf("%d/%d pods ready", ready, desired)
		set(ConditionDegraded, false, ReasonAsExpected, "")
		set(ConditionProgressing, false, ReasonRolledOut, msg)
		set(ConditionReady, true, ReasonRolledOut, msg)
	}
	return st
}

// rolledOut reports whether the Deployment's controller has seen its
// latest spec and every pod runs the current template and is available.
func rolledOut(d *appsv1.Deployment, want int32) bool {
	s := d.Status
	return s.ObservedGeneration >= d.Generation &&
		s.UpdatedReplicas == want && s.Replicas == want &&
		s.AvailableReplicas == want && s.ReadyReplicas == want
}

// deploymentFailure is the reason a Deployment cannot make progress, or "".
func deploymentFailure(d *appsv1.Deployment) string {
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
